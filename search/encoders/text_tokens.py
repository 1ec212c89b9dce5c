"""A checkpoint's tokenizer as transformers builds it, saved once and run with ``tokenizers``
alone: a process whose towers run on ONNX Runtime or OpenVINO then imports neither
transformers nor torch to turn a query into tokens.

transformers' fast tokenizers are a ``tokenizers.Tokenizer`` (normaliser, pre-tokeniser,
model, special-token template) driven with the truncation and padding of each call. Saved
after one call with the encoder's own settings (``TextTokenizer.capture``), the backend
keeps those settings, so ``encode_batch`` alone gives the ids and attention mask transformers
gives. Tokenizers without such a backend (mSigLIP's SentencePiece one) stay on transformers.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

TOKENIZER_FILE = "tokenizer.json"
SETTINGS_FILE = "tokenizer-settings.json"


class TextTokenizer:
    """Texts -> ``{"input_ids", "attention_mask"}`` int64 arrays, as the transformers tokenizer
    it was captured from returns them for the encoder's settings."""

    def __init__(self, backend, split_special_tokens: bool = False) -> None:
        self.backend = backend
        self.backend.encode_special_tokens = split_special_tokens

    @classmethod
    def capture(cls, tokenizer, call: dict) -> TextTokenizer | None:
        """The backend of the transformers ``tokenizer`` after one call with ``call``'s
        keyword arguments (which configures its truncation and padding); None for a
        tokenizer that has no ``tokenizers`` backend."""
        from tokenizers import Tokenizer

        backend = getattr(tokenizer, "backend_tokenizer", None)
        if not isinstance(backend, Tokenizer):
            return None
        tokenizer(["a"], **call)
        copy = Tokenizer.from_str(backend.to_str())
        return cls(copy, bool(getattr(tokenizer, "split_special_tokens", False)))

    def save(self, folder: Path) -> None:
        (folder / TOKENIZER_FILE).write_text(self.backend.to_str(), encoding="utf-8")
        settings = {"split_special_tokens": self.backend.encode_special_tokens}
        (folder / SETTINGS_FILE).write_text(json.dumps(settings), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> TextTokenizer:
        from tokenizers import Tokenizer

        settings = json.loads((folder / SETTINGS_FILE).read_text(encoding="utf-8"))
        return cls(Tokenizer.from_file(str(folder / TOKENIZER_FILE)),
                   bool(settings.get("split_special_tokens", False)))

    def __call__(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        encodings = self.backend.encode_batch(list(texts))
        return {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
        }
