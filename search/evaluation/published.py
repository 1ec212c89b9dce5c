"""Published zero-shot retrieval numbers for OpenAI CLIP, to check our benchmark against.

Datasets: ``flickr30k`` is the Flickr30k 1K test set (Karpathy split), ``coco`` the MSCOCO
5K test set (Karpathy split). Recalls are fractions. "text_to_image" is what the sources
call *image retrieval*, "image_to_text" what they call *text retrieval*.

The primary numbers for every model come from one table, open_clip's
``docs/openclip_retrieval_results.csv``, so all four models were measured by the same
harness under the same protocol. For ViT-L/14@336px the CLIP paper's own numbers
(Radford et al. 2021, Table 13; OpenAI confirmed that table is ViT-L/14@336px in
https://github.com/openai/CLIP/issues/115) are kept under ``"also"``. They are 0.3-2
points higher; the paper prepended the prompt "a photo of" to captions, which it reports
adds 1-2 points R@1. The paper gives no retrieval numbers for the smaller models, so
those have only the open_clip entry.
"""

from __future__ import annotations

from search.errors import InputError

__all__ = ["PUBLISHED", "published", "compare", "known_models", "known_datasets"]

_OPEN_CLIP_CSV = (
    "open_clip docs/openclip_retrieval_results.csv "
    "(github.com/mlfoundations/open_clip, commit 05e7db4987eda177906dc164b4c3ebeb39a9991a), "
    "row {row}"
)
# Read via secondary copies of Table 13 that agree digit for digit: the ALIGN paper's
# zero-shot table (Jia et al. 2021) and openai/CLIP issue #115 (COCO rows).
_CLIP_PAPER = (
    "Radford et al. 2021, 'Learning Transferable Visual Models From Natural Language "
    "Supervision', Table 13 (zero-shot, ViT-L/14@336px, captions prefixed 'a photo of')"
)


def _entry(t2i: tuple[float, float, float], i2t: tuple[float, float, float], source: str):
    keys = ("R@1", "R@5", "R@10")
    return {
        "text_to_image": dict(zip(keys, t2i, strict=True)),
        "image_to_text": dict(zip(keys, i2t, strict=True)),
        "source": source,
    }


# Values copied from the sources above; none estimated.
PUBLISHED: dict[str, dict[str, dict]] = {
    "openai/clip-vit-base-patch32": {
        "flickr30k": _entry(
            (0.5878, 0.8356, 0.9002), (0.7890, 0.9490, 0.9820),
            _OPEN_CLIP_CSV.format(row="ViT-B-32,openai"),
        ),
        "coco": _entry(
            (0.3044, 0.5594, 0.6687), (0.5012, 0.7500, 0.8352),
            _OPEN_CLIP_CSV.format(row="ViT-B-32,openai"),
        ),
    },
    "openai/clip-vit-base-patch16": {
        "flickr30k": _entry(
            (0.6216, 0.8572, 0.9192), (0.8220, 0.9660, 0.9900),
            _OPEN_CLIP_CSV.format(row="ViT-B-16,openai"),
        ),
        "coco": _entry(
            (0.3309, 0.5842, 0.6899), (0.5242, 0.7670, 0.8462),
            _OPEN_CLIP_CSV.format(row="ViT-B-16,openai"),
        ),
    },
    "openai/clip-vit-large-patch14": {
        "flickr30k": _entry(
            (0.6496, 0.8724, 0.9204), (0.8520, 0.9740, 0.9920),
            _OPEN_CLIP_CSV.format(row="ViT-L-14,openai"),
        ),
        "coco": _entry(
            (0.3651, 0.6106, 0.7113), (0.5634, 0.7938, 0.8660),
            _OPEN_CLIP_CSV.format(row="ViT-L-14,openai"),
        ),
    },
    "openai/clip-vit-large-patch14-336": {
        "flickr30k": {
            **_entry(
                (0.6690, 0.8900, 0.9334), (0.8770, 0.9850, 0.9940),
                _OPEN_CLIP_CSV.format(row="ViT-L-14-336,openai"),
            ),
            "also": [_entry((0.687, 0.906, 0.952), (0.880, 0.987, 0.994), _CLIP_PAPER)],
        },
        "coco": {
            **_entry(
                (0.3709, 0.6162, 0.7147), (0.5794, 0.8120, 0.8792),
                _OPEN_CLIP_CSV.format(row="ViT-L-14-336,openai"),
            ),
            "also": [_entry((0.378, 0.624, 0.722), (0.584, 0.815, 0.881), _CLIP_PAPER)],
        },
    },
}

_DATASET_ALIASES = {
    "flickr30k": "flickr30k",
    "flickr": "flickr30k",
    "flickr30k-test": "flickr30k",
    "coco": "coco",
    "mscoco": "coco",
    "coco5k": "coco",
    "coco-test": "coco",
}


def known_models() -> list[str]:
    return sorted(PUBLISHED)


def known_datasets() -> list[str]:
    return sorted({d for per_model in PUBLISHED.values() for d in per_model})


def published(model_id: str, dataset: str) -> dict | None:
    """Published numbers for a hub model id and dataset, or None if there are none.

    Returns ``{"text_to_image": {"R@1", "R@5", "R@10"}, "image_to_text": {...},
    "source": str}`` (plus ``"also"``: a list of entries of the same shape from other
    sources, where there are any). Model ids and dataset names match case-insensitively;
    "mscoco"/"coco5k" mean "coco" and "flickr" means "flickr30k".
    """
    per_model = PUBLISHED.get(model_id.strip().lower())
    if per_model is None:
        return None
    name = dataset.strip().lower()
    return per_model.get(_DATASET_ALIASES.get(name, name))


def compare(ours: dict, model_id: str, dataset: str) -> dict:
    """Put our metrics next to the published ones, per direction and recall.

    ``ours`` is ``retrieval_metrics`` output (or any dict with "text_to_image" /
    "image_to_text" sub-dicts of "R@k" fractions). Returns
    ``{"model": id, "dataset": name, "source": str, "text_to_image": {"R@1": {"ours",
    "published", "diff"}, ...}, "image_to_text": {...}}`` where diff = ours - published
    (fractions). Only recalls present in both are compared. Raises InputError when no
    numbers are published for the pair; call ``published()`` first to check.
    """
    ref = published(model_id, dataset)
    if ref is None:
        raise InputError(
            f"no published retrieval numbers for {model_id!r} on {dataset!r}; known models: "
            f"{', '.join(known_models())}; datasets: {', '.join(known_datasets())}."
        )
    out: dict = {"model": model_id, "dataset": dataset, "source": ref["source"]}
    for direction in ("text_to_image", "image_to_text"):
        mine = ours.get(direction) or {}
        rows = {}
        for metric, theirs in ref[direction].items():
            if metric in mine and mine[metric] is not None:
                value = float(mine[metric])
                rows[metric] = {"ours": value, "published": theirs, "diff": value - theirs}
        out[direction] = rows
    return out
