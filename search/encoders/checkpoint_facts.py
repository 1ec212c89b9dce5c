"""What a CLIP on an exported runtime needs of its checkpoint besides the towers, saved once.

Its kind, shapes, image processor settings and tokenizer: transformers reads them from the
checkpoint the first time (and imports torch with it: 1.5-2 s and about 250 MB a process).
Saved beside the exports (``<exports>/<checkpoint>/facts<format>-transformers<version>``),
they load in milliseconds, so a process whose towers are cached runs without transformers or
torch (``pixseek search``, ``serve``, ``watch``, ``index`` on ONNX Runtime or OpenVINO).
Keyed like the exports by the checkpoint's hash (its config, tokenizer and weights), by
transformers' version, which builds the tokenizer, and by ``FORMAT``.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

from search.encoders import export_cache
from search.encoders.text_tokens import TextTokenizer

log = logging.getLogger(__name__)

FACTS_FILE = "facts.json"
# Part of the folder's name: bump it when what is saved changes, or how the encoder calls its
# tokenizer (the saved backend keeps that call's padding and truncation).
FORMAT = 1


@dataclass
class Facts:
    model_type: str
    image_side: tuple[int, int]
    dim: int
    max_text_tokens: int
    lowercase: bool  # texts are lower-cased before tokenising (SigLIP 2's Gemma tokenizer)
    processor_config: dict


def folder(source: str, cache_dir: str | Path | None = None) -> Path:
    """Where ``source``'s facts live (OSError when the checkpoint is not on this machine)."""
    try:
        version = metadata.version("transformers")
    except metadata.PackageNotFoundError:
        version = "missing"
    return (export_cache.checkpoint_home(source, cache_dir)
            / f"facts{FORMAT}-transformers{version}")


def load(source: str, cache_dir: str | Path | None = None) -> tuple[Facts, TextTokenizer] | None:
    """The saved facts and tokenizer of ``source``, or None when there are none (yet): the
    caller reads the checkpoint through transformers, then ``save``s them. Unreadable ones
    are removed (one warning) and saved again by that path."""
    try:
        where = folder(source, cache_dir)
    except OSError:
        return None
    if not where.is_dir():
        return None
    try:
        export_cache.check_sizes(where)
        found = json.loads((where / FACTS_FILE).read_text(encoding="utf-8"))
        found["image_side"] = tuple(found["image_side"])
        facts = Facts(**found)
        tokenizer = TextTokenizer.load(where)
    except Exception as exc:  # noqa: BLE001 - any damage: transformers reads them again
        from search.errors import first_line

        log.warning("the saved tokenizer and settings in %s cannot be read (%s): reading the "
                    "checkpoint again", where, first_line(exc)[:200])
        shutil.rmtree(where, ignore_errors=True)
        return None
    export_cache.mark_used(where)
    return facts, tokenizer


def save(source: str, facts: Facts, tokenizer: TextTokenizer,
         cache_dir: str | Path | None = None) -> None:
    """Write ``source``'s facts once; a cache that cannot be written only costs speed."""

    def write(out: Path) -> None:
        (out / FACTS_FILE).write_text(json.dumps(asdict(facts), indent=1), encoding="utf-8")
        tokenizer.save(out)

    try:
        export_cache.build_once(folder(source, cache_dir), write)
    except OSError as exc:
        log.debug("cannot save the checkpoint's facts for %s: %s", source, exc)
