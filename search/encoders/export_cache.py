"""Where exported towers live: ``<user cache>/pixseek/exports/<checkpoint>/<runtime-version>/``.

The checkpoint hash covers its config, tokenizer and weights: a hub checkpoint's weights are
named by their own sha256 in the Hugging Face cache (read, not recomputed); a local folder's
weights are hashed once and the digest remembered against their size and mtime, so a second
load costs a stat. A runtime's version is part of the folder's name: a new version exports
again. Every build writes into a temporary folder renamed into place, so a half-written
export is never read; one that cannot be loaded is removed and built again, with one warning.
Each load marks its folder used; an export no process has loaded for ``UNUSED_DAYS`` (an old
runtime version's, a model no longer used) is removed when another one loads.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

EXPORTS_DIR = "exports"
HASHES_NAME = "weight-hashes.json"
META_NAME = "towers.json"  # an export's text inputs (search.encoders.onnx_export)
MANIFEST_NAME = "files.json"  # every file's size, written last: a truncated file is caught
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
HASHED_SUFFIXES = (".json", ".txt", ".model") + WEIGHT_SUFFIXES
_SHA256 = re.compile(r"[0-9a-f]{64}")
USED_NAME = ".last-used"  # touched at every load: its mtime is the export's last use
UNUSED_DAYS = 30


def root(cache_dir: str | Path | None = None) -> Path:
    if cache_dir is None:
        from search.files import cache_dir as user_cache_dir

        cache_dir = user_cache_dir()
    return Path(cache_dir).expanduser() / EXPORTS_DIR


def checkpoint_folder(source: str) -> Path:
    """The folder a checkpoint loads from: a local folder, or its hub cache snapshot (found
    through huggingface_hub: transformers takes a second to import). OSError when the hub
    cache does not hold it."""
    local = Path(source).expanduser()
    if local.is_dir():
        return local.resolve()
    from search.encoders.hub import cached_path

    config = cached_path(source, "config.json")
    if config is None:
        raise OSError(f"{source} is not in the local Hugging Face cache")
    return config.parent


def checkpoint_home(source: str, cache_dir: str | Path | None = None) -> Path:
    """The folder of one checkpoint's exports: ``<exports>/<its hash>``."""
    return root(cache_dir) / checkpoint_hash(checkpoint_folder(source), cache_dir)


def read_text_inputs(folder: Path) -> list[str]:
    """The text tower's inputs, as the export wrote them."""
    return list(json.loads((folder / META_NAME).read_text())["text_inputs"])


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _weights_digest(path: Path, memo: dict) -> str:
    real = path.resolve()
    if _SHA256.fullmatch(real.name):  # a hub blob is named by its sha256
        return real.name
    st = real.stat()
    key = f"{real}|{st.st_size}|{st.st_mtime_ns}"
    if key not in memo:
        memo[key] = _file_digest(real)
    return memo[key]


# This process's hashes by the checkpoint files' names, sizes and mtimes: the towers and the
# checkpoint's facts both ask, and a SigLIP 2 tokenizer.json alone is 34 MB to read.
_HASHED: dict[tuple, str] = {}


def checkpoint_hash(folder: Path, cache_dir: str | Path | None = None) -> str:
    """sha256 over the checkpoint's files (names and contents); 20 hex digits."""
    files = [f for f in sorted(folder.iterdir()) if f.is_file() and f.suffix in HASHED_SUFFIXES]
    stats = tuple((f.name, st.st_size, st.st_mtime_ns) for f in files for st in [f.stat()])
    key = (str(folder), str(root(cache_dir)), stats)
    if key not in _HASHED:
        _HASHED[key] = _hash_files(files, cache_dir)
    return _HASHED[key]


def _hash_files(files: list[Path], cache_dir: str | Path | None) -> str:
    memo_path = root(cache_dir) / HASHES_NAME
    try:
        memo = json.loads(memo_path.read_text())
    except (OSError, ValueError):
        memo = {}
    before = dict(memo)
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode() + b"\0")
        if f.suffix in WEIGHT_SUFFIXES:
            h.update(_weights_digest(f, memo).encode())
        else:
            h.update(hashlib.sha256(f.read_bytes()).digest())
    if memo != before:
        from search.files import atomic_write

        try:
            with atomic_write(memo_path, "w") as out:
                json.dump(memo, out, indent=1)
        except OSError as exc:
            log.debug("cannot remember weight hashes in %s: %s", memo_path, exc)
    return h.hexdigest()[:20]


def build_once(folder: Path, build: Callable[[Path], None]) -> Path:
    """``folder``, built by ``build(tmp)`` into a temporary folder renamed into place when
    it does not exist yet."""
    if folder.is_dir():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        build(tmp)
        sizes = {f.name: f.stat().st_size for f in sorted(tmp.iterdir()) if f.is_file()}
        (tmp / MANIFEST_NAME).write_text(json.dumps(sizes, indent=1))
        try:
            tmp.rename(folder)
        except OSError:  # another process built it first
            if not folder.is_dir():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return folder


def check_sizes(folder: Path) -> None:
    """An OSError when a file of ``folder`` is missing or not the size it was written at."""
    sizes = json.loads((folder / MANIFEST_NAME).read_text())
    for name, size in sizes.items():
        got = (folder / name).stat().st_size
        if got != size:
            raise OSError(f"{name} is {got} bytes, written as {size}")


def load_or_rebuild(folder: Path, build: Callable[[Path], None], load: Callable[[Path], object]):
    """``load(folder)``, building it first if needed; an export that fails to load is
    corrupt: removed, rebuilt and loaded again, with one warning."""
    build_once(folder, build)
    try:
        check_sizes(folder)
        loaded = load(folder)
    except Exception as exc:  # noqa: BLE001 - any failure to read a cached file
        from search.errors import first_line

        log.warning("the exported model in %s cannot be loaded (%s): exporting it again",
                    folder, first_line(exc)[:200])
        shutil.rmtree(folder, ignore_errors=True)
        build_once(folder, build)
        loaded = load(folder)
    mark_used(folder)
    prune_unused(folder.parent.parent, keep=folder)
    return loaded


def mark_used(folder: Path) -> None:
    try:
        (folder / USED_NAME).touch()
    except OSError:  # a read-only cache still loads
        pass


def prune_unused(exports: Path, keep: Path, days: float = UNUSED_DAYS) -> list[Path]:
    """Remove every export folder (``<exports>/<checkpoint>/<variant>``) but ``keep`` last
    loaded more than ``days`` ago (by its mark, else its own mtime), then checkpoints left
    empty. Folders being built (hidden) are left alone."""
    cutoff = time.time() - days * 86400
    removed: list[Path] = []
    for checkpoint in _subfolders(exports):
        for variant in _subfolders(checkpoint):
            if variant == keep:
                continue
            mark = variant / USED_NAME
            try:
                last = (mark if mark.exists() else variant).stat().st_mtime
            except OSError:
                continue
            if last < cutoff:
                shutil.rmtree(variant, ignore_errors=True)
                removed.append(variant)
        try:
            if removed and not any(checkpoint.iterdir()):
                checkpoint.rmdir()
        except OSError:  # another process is exporting into it
            pass
    if removed:
        log.info("removed %d exported models not loaded for %d days: %s", len(removed), days,
                 ", ".join(str(p) for p in removed))
    return removed


def _subfolders(folder: Path) -> list[Path]:
    try:
        return [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]
    except OSError:
        return []
