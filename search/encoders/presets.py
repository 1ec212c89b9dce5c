"""Named model presets: ``--model fast | best | multilingual``.

A preset is a short name for a hub checkpoint. It resolves to the hub id before anything
else happens, so vectors are tagged with the hub id (architecture invariant 2) and
``--model fast`` shares its index with ``--model openai/clip-vit-base-patch32``.

Published figures are copied from the source named beside each one; none is estimated.
The speed figures were measured here by ``benchmarks/model_presets.py`` on a random-weight
model of the checkpoint's exact shape (random weights cost what real ones cost).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

_OPEN_CLIP = (
    "open_clip docs/openclip_retrieval_results.csv (commit 05e7db4, as "
    "search/evaluation/published.py), row {row}"
)
_OPEN_CLIP_CSV = _OPEN_CLIP.format(row="ViT-B-32,openai")
# open_clip's timm/ViT-B-16-SigLIP-i18n-256 and google/siglip-base-patch16-256-multilingual
# are both converted from big_vision's one i18n B/16 256 px checkpoint.
_OPEN_CLIP_I18N = _OPEN_CLIP.format(
    row="ViT-B-16-SigLIP-i18n-256,webli (the same big_vision weights, converted for open_clip)"
)
_SIGLIP2_PAPER = (
    "Tschannen et al. 2025, 'SigLIP 2' (arXiv 2502.14786), Table 1, B/16 at 256 px "
    "(read via a copy of the table; the model card shows the same table as an image)"
)
_IMMICH = (
    "Immich's smart-search model table (docs), as quoted when the presets were chosen; "
    "not re-checked here"
)
_MEASURE_CMD = "python benchmarks/model_presets.py"


@dataclass(frozen=True)
class Figure:
    """One published quality figure."""

    metric: str
    value: float | None  # None: not published (or not found where we looked)
    source: str


@dataclass(frozen=True)
class Speed:
    """Throughput measured here (``benchmarks/model_presets.py``)."""

    images_per_s: dict[str, float]  # precision -> images/s, batch of 32
    texts_per_s: dict[str, float]  # precision -> text queries/s, one query per call
    cpu: str
    threads: int
    date: str
    command: str = _MEASURE_CMD
    note: str = ""


@dataclass(frozen=True)
class Preset:
    name: str
    hub_id: str
    family: str  # transformers model_type the checkpoint loads as
    image_size: int
    params_m: int  # parameters, millions (both towers)
    description: str
    published: tuple[Figure, ...]
    speed: Speed | None = None
    needs: tuple[str, ...] = field(default=())  # extra pip packages its tokenizer needs

    def as_dict(self) -> dict:
        return asdict(self)


# From bench-out/model_presets.json: one run, 3 rounds with the presets interleaved, on a
# quiet machine (load average 1.6-2.1 on 2 cores, the run's own; benchmarks/README.md).
_QUIET = "quiet machine, 3 interleaved rounds, median"


def _here(images: dict[str, float], texts: dict[str, float]) -> Speed:
    return Speed(images_per_s=images, texts_per_s=texts, cpu="AMD EPYC (2 vCPUs)",
                 threads=2, date="2026-11-29", note=_QUIET)


PRESETS: dict[str, Preset] = {
    "fast": Preset(
        name="fast",
        hub_id="openai/clip-vit-base-patch32",
        family="clip",
        image_size=224,
        params_m=151,
        description="OpenAI CLIP ViT-B/32: the default; 49 patches per photo, the cheapest "
                    "to index on a CPU. English only.",
        published=(
            Figure("Flickr30k text-to-image R@1", 58.8, _OPEN_CLIP_CSV),
            Figure("COCO 5k text-to-image R@1", 30.4, _OPEN_CLIP_CSV),
            Figure("Crossmodal-3600 recall (Immich)", 59.4, _IMMICH),
        ),
        speed=_here({"fp32": 8.92, "int8": 13.3}, {"fp32": 16.0, "int8": 39.2}),
    ),
    "best": Preset(
        name="best",
        hub_id="google/siglip2-base-patch16-256",
        family="siglip",
        image_size=256,
        params_m=375,
        description="SigLIP 2 B/16 at 256 px (fixed resolution): far better retrieval, "
                    "multilingual (Gemma tokenizer); 256 patches per photo.",
        published=(
            Figure("COCO 5k text-to-image R@1", 53.2, _SIGLIP2_PAPER),
            Figure("COCO 5k image-to-text R@1", 69.7, _SIGLIP2_PAPER),
            Figure("ImageNet zero-shot top-1", 79.1, _SIGLIP2_PAPER),
            Figure("Crossmodal-3600 recall (Immich)", 75.2, _IMMICH),
        ),
        speed=_here({"fp32": 1.72, "int8": 2.73}, {"fp32": 4.3, "int8": 11.3}),
    ),
    "multilingual": Preset(
        name="multilingual",
        hub_id="google/siglip-base-patch16-256-multilingual",
        family="siglip",
        image_size=256,
        params_m=370,
        description="mSigLIP B/16 at 256 px: trained on WebLI without a language filter "
                    "(every language at its web share); 250k-token SentencePiece vocabulary.",
        published=(
            Figure("Flickr30k text-to-image R@1", 72.2, _OPEN_CLIP_I18N),
            Figure("COCO 5k text-to-image R@1", 44.9, _OPEN_CLIP_I18N),
        ),
        speed=_here({"fp32": 1.71, "int8": 2.7}, {"fp32": 3.5, "int8": 9.9}),
        needs=("sentencepiece",),
    ),
}

# Which preset `pixseek models` recommends for a machine without a GPU; ``recommendation``
# says why from the figures above.
CPU_RECOMMENDATION = "best"


def is_preset(name: str) -> bool:
    """A preset name, unless a folder of that name exists (a local checkpoint wins, as a
    size name does in ``pixseek finetune``)."""
    return name in PRESETS and not Path(name).expanduser().is_dir()


def resolve(name: str) -> str:
    """A preset name -> its hub id; anything else unchanged."""
    return PRESETS[name].hub_id if is_preset(name) else name


def preset_for(hub_id: str) -> Preset | None:
    """The preset that names this hub id, if any."""
    return next((p for p in PRESETS.values() if p.hub_id == hub_id), None)


def _best_rate(speed: Speed | None, key: str) -> tuple[str, float] | None:
    """The fastest measured precision and its rate."""
    if speed is None:
        return None
    rates = getattr(speed, key)
    return max(rates.items(), key=lambda kv: kv[1]) if rates else None


def recommendation() -> str:
    """Which preset to run on a machine without a GPU, and why, from the figures above."""
    fast, best = PRESETS["fast"], PRESETS["best"]
    f, b = _best_rate(fast.speed, "images_per_s"), _best_rate(best.speed, "images_per_s")
    quality = (f"it finds far more (COCO text-to-image R@1 {best.published[0].value} against "
               f"{fast.published[1].value}; Crossmodal-3600 {best.published[3].value} against "
               f"{fast.published[2].value}) and reads other languages")
    if not (f and b):
        return f"CPU only: {CPU_RECOMMENDATION}: {quality}."
    return (
        f"CPU only: {CPU_RECOMMENDATION}: {quality}. Each photo costs it "
        f"{f[1] / b[1]:.1f}x what fast costs ({b[0]} {b[1]:g} against {f[0]} {f[1]:g} "
        "photos/s side by side here), paid once when a photo is indexed; a search encodes "
        "one short text. Take fast for a library too large to index that many times slower, "
        f"or under 2 GB of free memory ({best.params_m}M parameters against "
        f"{fast.params_m}M)."
    )
