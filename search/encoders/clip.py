"""The ``clip`` backend: any CLIP-family checkpoint transformers loads (CLIP, SigLIP).

torch and transformers are imported where a model runs on torch: a process whose towers run
exported (ONNX Runtime, OpenVINO) and whose checkpoint facts are saved
(``search.encoders.checkpoint_facts``) imports neither.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from search.encoders.base import Encoder, l2_normalise, pick_device
from search.encoders.checkpoint_facts import Facts
from search.encoders.hub import cached, no_hub_message, quiet_hub, unreachable_hub
from search.encoders.names import ALIASES, canonical_model_id, resolve_name  # noqa: F401
from search.encoders.precision import check_supported
from search.errors import DependencyError, ModelLoadError, PixseekError, first_line
from search.preprocess import PreprocessSpec

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

# What transformers raises for a checkpoint it cannot read.
_LOAD_ERRORS = (OSError, ValueError, KeyError, ImportError)

def _side(value: object, key: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, dict):
        return value.get(key)
    return None


def naflex_patches(cfg: dict) -> tuple[int, int]:
    """(patch size, max patches) of a SigLIP 2 NaFlex image processor configuration."""
    return int(cfg.get("patch_size", 16)), int(cfg.get("max_num_patches", 256))


def spec_from_processor_config(cfg: dict) -> PreprocessSpec:
    """Read a checkpoint's preprocessor_config.json into the spec our fast path executes.

    SigLIP 2 NaFlex (``max_num_patches``): its processor keeps each photo's aspect ratio,
    a grid of at most ``max_num_patches`` patches that differs per photo. The spec's
    ``patches`` does the same per photo, and ships the patches padded to one shape
    (``search.patches``)."""
    patches = None
    if "max_num_patches" in cfg or str(cfg.get("image_processor_type")).startswith("Siglip2"):
        patches = naflex_patches(cfg)
        # Siglip2ImageProcessor's defaults: bilinear, mean and std 0.5; no fixed size.
        cfg = {"resample": int(Image.Resampling.BILINEAR), "image_mean": [0.5] * 3,
               "image_std": [0.5] * 3, **cfg, "do_center_crop": False, "do_resize": False}
    size = cfg.get("size", {"shortest_edge": 224})
    shortest = _side(size, "shortest_edge")
    resize_to = None
    if isinstance(size, dict) and "height" in size and "width" in size:
        resize_to, shortest = (int(size["height"]), int(size["width"])), None
    if cfg.get("do_resize") is False:
        shortest, resize_to = None, None
    crop = None
    if cfg.get("do_center_crop", resize_to is None):
        c = cfg.get("crop_size", shortest)
        ch, cw = (_side(c, "height"), _side(c, "width")) if isinstance(c, dict) else (c, c)
        crop = (int(ch), int(cw)) if ch and cw else None
    mean = tuple(cfg.get("image_mean", PreprocessSpec.mean))
    std = tuple(cfg.get("image_std", PreprocessSpec.std))
    if cfg.get("do_normalize") is False:
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    rescale = float(cfg.get("rescale_factor", 1 / 255)) if cfg.get("do_rescale", True) else 1.0
    return PreprocessSpec(
        resize_shortest=shortest,
        resize_to=resize_to,
        crop=crop,
        resample=int(cfg.get("resample", Image.Resampling.BICUBIC)),
        mean=mean,  # type: ignore[arg-type]
        std=std,  # type: ignore[arg-type]
        rescale=rescale,
        patches=patches,
    )


def _load_error(name: str, exc: Exception, preset: str | None = None) -> PixseekError:
    first = first_line(exc)
    label = f"'{name}' (preset {preset})" if preset else f"'{name}'"
    if "sentencepiece" in str(exc).lower():
        # mSigLIP's tokenizer (SiglipTokenizer) exists only as a SentencePiece model.
        return DependencyError(
            f"cannot load model {label}: its tokenizer needs the sentencepiece package "
            "(pip install sentencepiece)"
        )
    if Path(name).expanduser().exists():
        hint = (
            "the folder must hold a transformers CLIP checkpoint "
            "(config.json, weights, tokenizer, image processor settings)"
        )
    else:
        hint = (
            "it is not in the local Hugging Face cache and the hub could not provide it; "
            "check the name, run once with network access, pass a local folder with "
            "--model /path/to/checkpoint, or use --model offline"
        )
    return ModelLoadError(f"cannot load model {label}: {hint} ({first})")


def image_processor_dict(source: str, local_only: bool) -> dict:
    """The checkpoint's image processor settings, found as transformers finds them: the
    ``image_processor`` section of processor_config.json (what CLIPProcessor.save_pretrained
    writes), else preprocessor_config.json. Read here: transformers' own resolver lives in a
    module that takes 1.3 s to import."""
    import json

    from transformers.utils import cached_file

    for filename, section in (("processor_config.json", "image_processor"),
                              ("preprocessor_config.json", None)):
        path = cached_file(source, filename, local_files_only=local_only,
                           _raise_exceptions_for_missing_entries=False)
        if path is None:
            continue
        found = json.loads(Path(path).read_text(encoding="utf-8"))
        if section is None:
            return found
        if isinstance(found.get(section), dict):
            return found[section]
    raise OSError(f"{source} has no image processor settings (preprocessor_config.json)")


def _load_tokenizer(name: str, preset: str | None, source: str, kw: dict):
    """The checkpoint's transformers tokenizer; a load error says what to do."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(source, **kw)
    except _LOAD_ERRORS as exc:
        raise _load_error(name, exc, preset) from None


def image_forward(model, x: torch.Tensor | dict[str, torch.Tensor]) -> object:
    """The image tower on ``to_model_input``'s output: a normalised [N, 3, H, W] batch, or
    for NaFlex the keyword arguments Siglip2Model takes (patches, mask, grid shapes)."""
    if isinstance(x, dict):
        return model.get_image_features(**x)
    return model.get_image_features(pixel_values=x)


class ClipEncoder(Encoder):
    towers = None  # the exported towers when the runtime is not torch (use_runtime)
    runtime, runtime_reason = "torch", "asked for"
    dtype = None  # the torch model's input dtype, set with its precision (None: float32)
    _text_tokens = None  # the saved tokenizer (text_tokens.TextTokenizer), when loaded from it

    def __init__(
        self,
        name: str,
        device: str = "auto",
        fp16: bool = True,
        precision: str | None = None,
        cache_dir: str | Path | None = None,
        min_cosine: float | None = None,
        runtime: str = "torch",
        calibration_photos=None,
    ) -> None:
        """``precision`` None: fp16 on CUDA or MPS when ``fp16``, else fp32;
        ``auto`` measures once and caches the choice in ``cache_dir/precision.json``
        (``search.encoders.precision``); ``fp16`` false keeps auto away from fp16.
        ``runtime`` (``search.encoders.runtimes``): torch, onnxruntime, openvino or auto;
        ``calibration_photos()`` -> the photos static int8 is calibrated on (None: the
        sample photos)."""
        from search.encoders.presets import is_preset

        preset = name if is_preset(name) else None
        name = resolve_name(name)  # a preset or an OpenAI alias -> its hub id
        local = Path(name).expanduser()
        source = canonical_model_id(name)  # a folder resolved, an alias expanded
        if not local.exists() and not cached(source):  # before seconds of imports
            hub = unreachable_hub()
            if hub:
                raise ModelLoadError(no_hub_message(name, preset, hub))
        self.device = pick_device(device)
        reason = "asked for"
        if precision is None:
            from search.encoders.precision import default_precision

            precision = default_precision(self.device, fp16)
            reason = "not set: fp16 on CUDA or MPS when fp16 is allowed, else fp32"
        runtime = self._early_runtime(runtime, precision)
        if precision != "auto" and runtime == "torch":
            check_supported(precision, self.device)
        exported = runtime != "torch"  # auto here may still settle on torch
        saved = None
        if exported:  # the towers may run without transformers: read what it saved
            from search.encoders import checkpoint_facts

            saved = checkpoint_facts.load(source)
        self._tokenizer = None
        if saved is not None:
            facts, self._text_tokens = saved
            kw = {"local_files_only": True}
        else:
            facts, kw = self._read_checkpoint(name, preset, source, local)
        self._model = None
        self._model_source = (name, preset, source, kw)
        self.model_type = facts.model_type
        self._image_side = facts.image_side
        self.max_text_tokens = facts.max_text_tokens
        self.lowercase = facts.lowercase
        if runtime == "torch":
            self._load_model()  # else loaded when first needed: a cached export runs without it
        self.processor_config = facts.processor_config  # a fine-tuned copy saves it as is
        self.spec = spec_from_processor_config(facts.processor_config)
        # SigLIP 2 NaFlex (Siglip2Model) reads patches, a patch mask and the grid's shape.
        self.naflex = self.spec.patches
        # Vectors are tagged with the hub id, or the absolute folder of a local checkpoint.
        self.model_id = source
        self.runtime = "torch"
        self.runtime_reason = getattr(self, "_runtime_note", "asked for")
        self.calibration_photos, self.cache_dir = calibration_photos, cache_dir
        if exported:
            from search.encoders.runtime_choice import settle

            runtime, precision, reason = settle(self, runtime, precision, fp16, min_cosine)
        if precision == "auto":
            precision, reason = self._choose_precision(fp16, cache_dir, min_cosine)
        if runtime == "torch":
            self._set_precision(precision, reason)
        else:
            self.use_runtime(runtime, precision, reason)
        # After the runtime: a probe runs on the exported towers, not the torch model.
        self.dim = facts.dim or self._probe_dim()
        if exported and saved is None:
            self._save_facts(facts)

    def _read_checkpoint(self, name: str, preset: str | None, source: str, local: Path):
        """(facts, from_pretrained's keyword arguments) of the checkpoint, read through
        transformers; the transformers tokenizer is kept."""
        from transformers import AutoConfig

        try:
            # Local cache first: an offline machine must not wait on network retries.
            try:
                config = AutoConfig.from_pretrained(source, local_files_only=True)
                local_only = True
            except OSError:
                if local.exists():
                    raise
                with quiet_hub():
                    config = AutoConfig.from_pretrained(source)
                local_only = False
            kw = {"local_files_only": local_only}
            proc_cfg = image_processor_dict(source, local_only)
        except _LOAD_ERRORS as exc:
            raise _load_error(name, exc, preset) from None
        self._tokenizer = _load_tokenizer(name, preset, source, kw)
        model_type = config.model_type
        vision = getattr(config, "vision_config", config)
        side = int(getattr(vision, "image_size", 224))
        text_cfg = getattr(config, "text_config", config)
        facts = Facts(
            model_type=model_type,
            image_side=(side, side),
            dim=int(getattr(config, "projection_dim", 0) or 0),
            max_text_tokens=int(getattr(text_cfg, "max_position_embeddings", 77)),
            # SigLIP 2 was trained on lower-cased text ("transforming the text to lower case
            # before tokenization", its paper), but its checkpoints ship a Gemma tokenizer
            # that keeps case; SigLIP 1's own tokenizer lower-cases.
            lowercase=model_type.startswith("siglip")
            and "gemma" in type(self._tokenizer).__name__.lower(),
            processor_config=proc_cfg,
        )
        return facts, kw

    def _save_facts(self, facts) -> None:
        """Save what the next process needs to run the exported towers without transformers
        (``search.encoders.checkpoint_facts``); nothing for a tokenizer it cannot save."""
        from search.encoders import checkpoint_facts
        from search.encoders.text_tokens import TextTokenizer

        captured = TextTokenizer.capture(self.tokenizer, self._token_call())
        if captured is not None:
            facts.dim = self.dim
            checkpoint_facts.save(self.model_id, facts, captured)

    @property
    def tokenizer(self):
        """The checkpoint's transformers tokenizer (fine-tuning trains and saves it), read
        the first time it is needed when the encoder was loaded from saved facts."""
        if self._tokenizer is None:
            self._tokenizer = _load_tokenizer(*self._model_source)
        return self._tokenizer

    @property
    def model(self):
        """The torch model in fp32 (or at its torch precision): loaded with the encoder, or on
        an exported runtime whose export is cached, the first time something needs it (the
        reference ``runtime: auto`` measures against, a new export, fine-tuning)."""
        return self._model if self._model is not None else self._load_model()

    @model.setter
    def model(self, value) -> None:
        self._model = value

    def _load_model(self):
        import torch
        from transformers import AutoModel

        name, preset, source, kw = self._model_source
        try:
            model = AutoModel.from_pretrained(source, dtype=torch.float32, **kw)
        except _LOAD_ERRORS as exc:
            raise _load_error(name, exc, preset) from None
        if not hasattr(model, "get_image_features"):
            raise ModelLoadError(
                f"cannot load model '{name}': {self.model_type} is not a CLIP-family "
                "image-text model (it has no image and text towers)"
            )
        self._model = model.to(self.device).eval()
        return self._model

    def _early_runtime(self, runtime: str, precision: str) -> str:
        """What ``runtime`` can be before the model loads: torch where only torch runs (a GPU,
        SigLIP 2 NaFlex), the exported runtime an explicit int8-static needs under auto."""
        from search.encoders import runtimes

        runtimes.check_name(runtime)
        if runtime == "auto" and self.device != "cpu":
            self._runtime_note = f"auto: torch is the {self.device} path"
            return "torch"
        if runtime == "auto" and precision not in ("auto", "int8-static"):
            self._runtime_note = f"auto with precision {precision} asked for: torch runs it"
            return "torch"
        if runtime not in ("torch", "auto"):
            runtimes.check(runtime, "fp32" if precision == "auto" else precision, self.device)
        return runtime

    def use_runtime(self, runtime: str, precision: str, reason: str) -> None:
        """Run both towers on ``runtime`` at ``precision`` (exported and cached on first use);
        the torch model stays in fp32 as the reference."""
        from search.encoders.exported import load_towers

        self.towers = None
        self.towers = load_towers(
            lambda: self.model, self.model_type, self.image_side(), self.model_id, runtime,
            precision, self.spec, calibration=self.calibration, cache_dir=None,
        )
        self.dtype = None
        self.runtime, self.runtime_reason = runtime, reason
        self.precision, self.precision_reason = precision, reason

    def image_side(self) -> tuple[int, int]:
        return self._image_side

    def calibration(self):
        from search.encoders.int8_calibration import calibration_set

        photos = self.calibration_photos() if self.calibration_photos else None
        return calibration_set(self, photos)

    def _set_precision(self, precision: str, reason: str) -> None:
        from search.encoders.precision import apply, input_dtype

        self.model = apply(self.model, precision)
        self.dtype = input_dtype(precision)
        self.precision, self.precision_reason = precision, reason

    def _choose_precision(
        self, fp16: bool, cache_dir: str | Path | None, min_cosine: float | None
    ) -> tuple[str, str]:
        """``auto``: the cached choice for this model, device, CPU and torch, or measure."""
        from search.encoders import precision as prec

        hit = prec.cached_choice(cache_dir, self.model_id, self.device)
        if hit is not None:
            return hit["precision"], f"auto, cached: {hit.get('reason', '')}"
        batch = prec.sample_batch(self.spec)
        if batch is None:
            reason = "auto: no sample photos are installed to check fidelity, so fp32"
            log.warning("precision %s", reason)
            return "fp32", reason
        pixels, captions = batch
        candidates = [p for p in prec.supported(self.device) if fp16 or p != "fp16"]
        variant: dict[str, torch.nn.Module] = {}

        def encode(p: str, px: np.ndarray | None, texts: Sequence[str] | None) -> np.ndarray:
            if p == "fp32":
                model = self.model
            else:
                if p not in variant:
                    variant.clear()  # one copy at a time
                    variant[p] = prec.apply(self.model, p, inplace=False)
                model = variant[p]
            if px is not None:
                return self._image_features(model, prec.input_dtype(p), px)
            return self._text_features(model, texts or [])

        choice = prec.measure(
            encode, pixels, captions, candidates, device=self.device,
            min_cosine=prec.MIN_COSINE if min_cosine is None else min_cosine,
        )
        variant.clear()
        prec.write_choice(cache_dir, self.model_id, self.device, choice.as_entry())
        message = f"precision auto: {choice.reason}"
        log.info("%s", message)
        print(message, file=sys.stderr)
        return choice.precision, f"auto: {choice.reason}"

    def _probe_dim(self) -> int:
        # A small photo through the model's own preprocessing: the right input for every
        # layout (an all-zero NaFlex array would be a 0 x 0 grid).
        return self.encode_images([Image.new("RGB", (64, 64))]).shape[1]

    @staticmethod
    def _features(out: object) -> torch.Tensor:
        import torch

        # transformers 5 returns a model output whose pooler_output is the projection;
        # 4.x returns the tensor itself.
        return out if isinstance(out, torch.Tensor) else out.pooler_output  # type: ignore

    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        from search.encoders.oom import encode_in_parts  # out of memory: halves (oom.py)

        if self.towers is not None:
            return encode_in_parts(
                self, lambda part: self.exported_image_features(self.towers, part), pixels, "image"
            )
        return encode_in_parts(
            self, lambda part: self._image_features(self.model, self.dtype, part), pixels,
            "image",
        )

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        from search.encoders.oom import encode_in_parts  # out of memory: halves (oom.py)

        if self.towers is not None:
            return encode_in_parts(
                self, lambda part: self.exported_text_features(self.towers, part), texts, "text"
            )
        return encode_in_parts(
            self, lambda part: self._text_features(self.model, part), texts, "text"
        )

    def exported_image_features(self, towers, pixels: np.ndarray) -> np.ndarray:
        return l2_normalise(towers.image(pixels))  # uint8 or normalised

    def exported_text_features(self, towers, texts: Sequence[str]) -> np.ndarray:
        return l2_normalise(towers.text(self.token_arrays(texts)))

    def _image_features(self, model, dtype: torch.dtype | None, pixels: np.ndarray) -> np.ndarray:
        import torch

        from search.encoders.pixels import to_model_input

        with torch.inference_mode():
            x = to_model_input(pixels, self.spec, self.device, dtype or torch.float32)
            return l2_normalise(self._features(image_forward(model, x)))

    def _token_call(self) -> dict:
        """The tokenizer's padding and truncation for this model's text tower."""
        # SigLIP was trained on max-length padding; CLIP takes the end-of-text token.
        padding = "max_length" if self.model_type.startswith("siglip") else True
        return {"padding": padding, "truncation": True, "max_length": self.max_text_tokens}

    def token_arrays(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """The tokens the text tower reads, int64: input_ids, and CLIP's attention_mask."""
        texts = [t.lower() for t in texts] if self.lowercase else list(texts)
        if self._text_tokens is not None:  # saved from transformers: the same ids
            tokens = self._text_tokens(texts)
        else:
            tokens = self.tokenizer(texts, return_tensors="np", **self._token_call())
        out = {"input_ids": np.asarray(tokens["input_ids"], dtype=np.int64)}
        if "attention_mask" in tokens and not self.model_type.startswith("siglip"):
            out["attention_mask"] = np.asarray(tokens["attention_mask"], dtype=np.int64)
        return out

    def text_inputs(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """``token_arrays`` as tensors on the model's device."""
        import torch

        return {k: torch.from_numpy(v).to(self.device)
                for k, v in self.token_arrays(texts).items()}

    def _text_features(self, model, texts: Sequence[str]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            kwargs = self.text_inputs(texts)
            return l2_normalise(self._features(model.get_text_features(**kwargs)))
