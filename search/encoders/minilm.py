"""The offline model's text tower (all-MiniLM-L6-v2, a 6-layer BERT) in plain torch, with the
Rust ``tokenizers`` library: the same vectors as transformers' BertModel, without importing
transformers, whose import alone costs seconds more than a text query does.

``tests/search/test_minilm.py`` checks it against transformers' BertModel.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

MAX_TOKENS = 256


class MiniLM:
    def __init__(self, folder: str | Path, device: str | torch.device = "cpu") -> None:
        from safetensors.torch import load_file
        from tokenizers import Tokenizer

        folder = Path(folder)
        cfg = json.loads((folder / "config.json").read_text())
        self.heads = int(cfg["num_attention_heads"])
        self.layers = int(cfg["num_hidden_layers"])
        self.eps = float(cfg["layer_norm_eps"])
        if cfg.get("hidden_act") != "gelu" or cfg.get("model_type") != "bert":
            raise ValueError(f"{folder}: not a BERT checkpoint with gelu")
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=MAX_TOKENS)
        self.tokenizer.enable_padding(pad_id=int(cfg.get("pad_token_id", 0)), pad_token="[PAD]")
        self.device = torch.device(device)
        weights = load_file(str(folder / "model.safetensors"))
        self.w = {name: tensor.to(self.device) for name, tensor in weights.items()}

    def _norm(self, x: torch.Tensor, name: str) -> torch.Tensor:
        return F.layer_norm(x, x.shape[-1:], self.w[f"{name}.weight"], self.w[f"{name}.bias"],
                            self.eps)

    def _linear(self, x: torch.Tensor, name: str) -> torch.Tensor:
        return F.linear(x, self.w[f"{name}.weight"], self.w[f"{name}.bias"])

    @torch.inference_mode()
    def hidden(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """The last hidden state [N, L, dim] and the attention mask [N, L] of ``texts``."""
        batch = self.tokenizer.encode_batch(list(texts))
        ids = torch.tensor([e.ids for e in batch], device=self.device)
        mask = torch.tensor([e.attention_mask for e in batch], device=self.device)
        w = self.w
        positions = torch.arange(ids.shape[1], device=self.device)
        x = (w["embeddings.word_embeddings.weight"][ids]
             + w["embeddings.token_type_embeddings.weight"][0]
             + w["embeddings.position_embeddings.weight"][positions])
        x = self._norm(x, "embeddings.LayerNorm")
        n, length, dim = x.shape
        keep = mask.bool()[:, None, None, :]  # [N, 1, 1, L]: attend to real tokens only

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(n, length, self.heads, dim // self.heads).transpose(1, 2)

        for i in range(self.layers):
            p = f"encoder.layer.{i}"
            q = split(self._linear(x, f"{p}.attention.self.query"))
            k = split(self._linear(x, f"{p}.attention.self.key"))
            v = split(self._linear(x, f"{p}.attention.self.value"))
            ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=keep)
            ctx = ctx.transpose(1, 2).reshape(n, length, dim)
            x = self._norm(self._linear(ctx, f"{p}.attention.output.dense") + x,
                           f"{p}.attention.output.LayerNorm")
            h = F.gelu(self._linear(x, f"{p}.intermediate.dense"))
            x = self._norm(self._linear(h, f"{p}.output.dense") + x, f"{p}.output.LayerNorm")
        return x, mask
