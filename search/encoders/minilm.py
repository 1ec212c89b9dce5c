"""The offline model's text tower (all-MiniLM-L6-v2, a 6-layer BERT) in numpy, with the Rust
``tokenizers`` library: the same vectors as transformers' BertModel (within 1e-5), without
importing transformers or torch, whose imports cost seconds more than a text query does.
A query takes about 2 ms here; the 1000 class texts are computed once and cached
(``search.encoders.offline``).

``tests/search/test_library.py`` checks it against transformers' BertModel.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

MAX_TOKENS = 256


def erf(x: np.ndarray) -> np.ndarray:
    """The error function (Abramowitz and Stegun 7.1.26: absolute error under 1.5e-7, the
    size of float32's rounding), for BERT's exact GELU; numpy has none."""
    t = 1.0 / (1.0 + 0.3275911 * np.abs(x))
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741
                + t * (-1.453152027 + t * 1.061405429))))
    return np.copysign(1.0 - poly * np.exp(-x * x), x)


def gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + erf(x * np.float32(1 / np.sqrt(2))))


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


class MiniLM:
    def __init__(self, folder: str | Path) -> None:
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        folder = Path(folder)
        cfg = json.loads((folder / "config.json").read_text())
        self.heads = int(cfg["num_attention_heads"])
        self.layers = int(cfg["num_hidden_layers"])
        self.eps = np.float32(cfg["layer_norm_eps"])
        if cfg.get("hidden_act") != "gelu" or cfg.get("model_type") != "bert":
            raise ValueError(f"{folder}: not a BERT checkpoint with gelu")
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=MAX_TOKENS)
        self.tokenizer.enable_padding(pad_id=int(cfg.get("pad_token_id", 0)), pad_token="[PAD]")
        weights = {name: np.asarray(t, dtype=np.float32)
                   for name, t in load_file(str(folder / "model.safetensors")).items()}
        # x @ W.T for every Linear, transposed once here (and kept once: 42 MB), which a
        # query's small products run 20 % faster on than on a transposed view
        linear = [n for n, t in weights.items() if t.ndim == 2 and "embeddings" not in n]
        self.wt = {n[:-len(".weight")]: np.ascontiguousarray(weights.pop(n).T) for n in linear}
        self.w = weights  # embeddings, norms and biases

    def _norm(self, x: np.ndarray, name: str) -> np.ndarray:
        mean = x.mean(axis=-1, keepdims=True)
        var = np.square(x - mean).mean(axis=-1, keepdims=True)
        return (x - mean) / np.sqrt(var + self.eps) * self.w[f"{name}.weight"] \
            + self.w[f"{name}.bias"]

    def _linear(self, x: np.ndarray, name: str) -> np.ndarray:
        # As one 2-D product: numpy runs a 3-D one as a product per text (2.8x slower here).
        out = x.reshape(-1, x.shape[-1]) @ self.wt[name]
        out += self.w[f"{name}.bias"]
        return out.reshape(*x.shape[:-1], out.shape[-1])

    def hidden(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """The last hidden state [N, L, dim] float32 and the attention mask [N, L] of
        ``texts``."""
        batch = self.tokenizer.encode_batch(list(texts))
        ids = np.array([e.ids for e in batch], dtype=np.int64)
        mask = np.array([e.attention_mask for e in batch], dtype=np.int64)
        w = self.w
        x = (w["embeddings.word_embeddings.weight"][ids]
             + w["embeddings.token_type_embeddings.weight"][0]
             + w["embeddings.position_embeddings.weight"][:ids.shape[1]])
        x = self._norm(x, "embeddings.LayerNorm")
        n, length, dim = x.shape
        head = dim // self.heads
        # padding keys get -inf before the softmax: attend to real tokens only
        blocked = np.where(mask[:, None, None, :] == 0, -np.inf, 0).astype(np.float32)
        scale = np.float32(1 / np.sqrt(head))

        def split(t: np.ndarray) -> np.ndarray:  # [N, L, dim] -> [N, heads, L, head]
            return t.reshape(n, length, self.heads, head).transpose(0, 2, 1, 3)

        for i in range(self.layers):
            p = f"encoder.layer.{i}"
            q = split(self._linear(x, f"{p}.attention.self.query"))
            k = split(self._linear(x, f"{p}.attention.self.key"))
            v = split(self._linear(x, f"{p}.attention.self.value"))
            probs = softmax((q @ k.transpose(0, 1, 3, 2)) * scale + blocked)
            ctx = (probs @ v).transpose(0, 2, 1, 3).reshape(n, length, dim)
            x = self._norm(self._linear(ctx, f"{p}.attention.output.dense") + x,
                           f"{p}.attention.output.LayerNorm")
            h = gelu(self._linear(x, f"{p}.intermediate.dense"))
            x = self._norm(self._linear(h, f"{p}.output.dense") + x, f"{p}.output.LayerNorm")
        return x.astype(np.float32, copy=False), mask
