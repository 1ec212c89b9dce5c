"""Training CLIP models: fine-tuning, pre-training from scratch, synthetic data."""
