"""A vector index on disk: an immutable FAISS file and the manifest that names it.

One folder per model holds ``manifest.json`` and ``vectors-<generation>.faiss``. The FAISS
file is written under a temporary name, flushed to disk and renamed; only then is the
manifest (also written aside and renamed) switched to it, and older files are deleted. A
crash at any point leaves the previous manifest naming a complete file, or no manifest.
A file whose size differs from what the manifest recorded (torn, truncated, replaced) is
refused, and the caller rebuilds from the store. The manifest also holds a checksum of each
block of the file (``verify``): bytes flipped in place keep the size, so a reader checks them
before it first searches a snapshot, and a writer before it merges one.

Files are opened memory-mapped: opening costs milliseconds whatever the size, and the
pages a search touches are shared with the OS page cache instead of copied into the process.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from search import disk
from search.errors import first_line
from search.faiss_lib import faiss
from search.files import atomic_write

log = logging.getLogger(__name__)
FORMAT = 3  # 3: IVF holds 4-bit codes re-ranked from the store; recall per query kind
MANIFEST = "manifest.json"
# Checksum block: 8 MiB. blake2b reads about 1 GB/s a core here: 0.2 s for the 206 MB
# snapshot of 1M 384-d photos, paid once per snapshot a process searches.
BLOCK = 8 * 2**20


def mmap_flags(kind: str) -> int:
    """Memory-map the inverted lists of an IVF index, or the vector storage of a flat or
    HNSW one, read-only. (The two flags do not combine: the IVF reader needs a plain file.)"""
    if kind == "ivf":
        return faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY
    return faiss.IO_FLAG_MMAP_IFC


def folder_for(data_dir: Path, model_id: str) -> Path:
    """``<data_dir>/index-<model slug>-<hash>``: one folder per model, never shared."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", model_id).strip("-")[-60:]
    digest = hashlib.sha1(model_id.encode()).hexdigest()[:8]
    return Path(data_dir) / f"index-{slug}-{digest}"


@dataclass
class Manifest:
    model: str
    requested: str  # the configured kind (auto, flat, ...)
    kind: str  # the kind built (auto resolves to flat or ivf)
    dim: int
    count: int  # vectors in the file
    embedding_mark: int  # the newest embedding id the file reflects
    removal_mark: int  # the newest removal the file reflects
    file: str
    bytes: int
    generation: int
    trained_count: int = 0  # library size the IVF cells were trained for
    depth: int = 0  # tuned nprobe / efSearch (0: exact kinds)
    tuned_recall: float | None = None  # the lowest of ``recall``
    recall: dict = field(default_factory=dict)  # held-out recall@10 per query kind
    checksums: list = field(default_factory=list)  # blake2b of each BLOCK of the file
    extra: dict = field(default_factory=dict)
    format: int = FORMAT


@dataclass
class Snapshot:
    manifest: Manifest
    index: faiss.Index
    stamp: tuple[int, int, int]  # the manifest file's (inode, size, mtime): changed = reload


def manifest_stamp(folder: Path) -> tuple[int, int, int] | None:
    """A cheap fingerprint of the manifest; another process's new snapshot changes it."""
    try:
        st = os.stat(folder / MANIFEST)
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


def read_manifest(folder: Path) -> Manifest | None:
    try:
        raw = json.loads((folder / MANIFEST).read_text())
        manifest = Manifest(**raw)
    except (OSError, ValueError, TypeError):
        return None
    return manifest if manifest.format == FORMAT else None


def load(folder: Path, model: str) -> Snapshot | None:
    """The snapshot in ``folder``, memory-mapped; None if absent, torn or for another model."""
    for _attempt in range(3):  # a writer may swap the files between our two reads
        stamp = manifest_stamp(folder)
        manifest = read_manifest(folder)
        if manifest is None or stamp is None:
            return None
        if manifest.model != model:
            log.warning("%s holds vectors of another model; ignoring it", folder)
            return None
        path = folder / manifest.file
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            if manifest_stamp(folder) != stamp:
                continue  # replaced meanwhile: read the new manifest
            return None
        if size != manifest.bytes:
            log.warning("%s is %d bytes, its manifest says %d: torn", path, size, manifest.bytes)
            return None
        try:
            index = faiss.read_index(str(path), mmap_flags(manifest.kind))
        except RuntimeError as exc:
            log.warning("cannot read %s: %s", path, first_line(exc))
            return None
        if index.ntotal != manifest.count or index.d != manifest.dim:
            return None
        if manifest.kind == "ivf":
            # Mapped lists come with 32 prefetch threads per search: 4.4 ms a query at 1M
            # vectors against 1.5 ms without, the pages being in the OS cache anyway.
            lists = faiss.downcast_InvertedLists(faiss.extract_index_ivf(index).invlists)
            if hasattr(lists, "prefetch_nthread"):
                lists.prefetch_nthread = 0
            # One query at a time (a server's case) scans its cells on every core: 9 ms
            # against 14 ms for 1024 cells of a 1M-photo index on two cores.
            faiss.extract_index_ivf(index).parallel_mode = 1
        return Snapshot(manifest, index, stamp)
    return None


def checksums(path: Path) -> list[str]:
    out = []
    with open(path, "rb") as fh:
        while block := fh.read(BLOCK):
            out.append(hashlib.blake2b(block, digest_size=8).hexdigest())
    return out


def verify(folder: Path, manifest: Manifest) -> str | None:
    """Why the snapshot's file does not match its manifest (None: it does): a size or a
    block checksum that differs. A manifest without checksums cannot be checked: None."""
    path = folder / manifest.file
    try:
        if path.stat().st_size != manifest.bytes:
            return f"{path.name} is {path.stat().st_size} bytes, its manifest says {manifest.bytes}"
        if not manifest.checksums:
            return None
        found = checksums(path)
    except OSError as exc:
        return f"cannot read {path.name}: {exc.strerror or exc}"
    for i, (want, got) in enumerate(zip(manifest.checksums, found, strict=False)):
        if want != got:
            return f"block {i} of {path.name} (bytes {i * BLOCK}-{(i + 1) * BLOCK}) changed"
    return None


def load_writable(folder: Path, manifest: Manifest) -> faiss.Index:
    """The snapshot's index read wholly into memory, to add to or remove from."""
    return faiss.read_index(str(folder / manifest.file))


_held: dict[Path, int] = {}
_held_guard = threading.RLock()


@contextmanager
def writer_lock(folder: Path) -> Iterator[None]:
    """One writer per index folder at a time, whichever process it is (readers never wait).
    Re-entrant within a process: a writer that reopens and rebuilds does not block itself."""
    folder = folder.resolve()
    with _held_guard:  # threads of one process queue here; processes on the flock
        if _held.get(folder):
            _held[folder] += 1
            try:
                yield
            finally:
                _held[folder] -= 1
            return
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(folder / "write.lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            if disk.storage_error(exc, folder, 0) is None:
                raise
            # A read-only or full disk: nobody can write here, so there is no one to
            # exclude; what the caller builds stays in memory (FaissIndex._write).
            _held[folder] = 1
            try:
                yield
            finally:
                _held.pop(folder, None)
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            _held[folder] = 1
            yield
        finally:
            _held.pop(folder, None)
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write(folder: Path, index: faiss.Index, manifest: Manifest) -> Manifest:
    """Write ``index`` as the next generation and switch the manifest to it (call under
    ``writer_lock``). FAISS streams the index to the file: no second copy in memory."""
    previous = read_manifest(folder)
    generation = max(manifest.generation, previous.generation if previous else 0) + 1
    name = f"vectors-{generation:06d}.faiss"
    tmp = folder / f".{name}.{os.getpid()}.tmp"
    # What the file will take, for the message if the disk is full: codes and ids.
    try:
        code = index.sa_code_size()
    except RuntimeError:  # not every index type can tell: assume float32 vectors
        code = 4 * index.d
    needed = int(index.ntotal * (code + 8) * 1.1) + 2**20
    try:
        folder.mkdir(parents=True, exist_ok=True)
        try:
            faiss.write_index(index, str(tmp))
        except RuntimeError as exc:  # FAISS reports a failed write without its errno
            if disk.free_bytes(folder) < needed:
                raise OSError(errno.ENOSPC, "No space left on device") from exc
            if not disk.writable(folder):
                raise OSError(errno.EROFS, "Read-only file system") from exc
            raise
        _fsync_path(tmp)
        manifest.checksums = checksums(tmp)
        os.replace(tmp, folder / name)
        manifest.file, manifest.generation = name, generation
        manifest.bytes = (folder / name).stat().st_size
        write_manifest(folder, manifest)
        _fsync_path(folder)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)  # never leave a partial file behind
        problem = disk.storage_error(exc, folder / name, needed)
        if problem is None:
            raise
        raise problem from None
    remove_stale(folder, keep=name)
    return manifest


def write_manifest(folder: Path, manifest: Manifest) -> None:
    """Replace the manifest of the same file (a new search depth, say); call under
    ``writer_lock``. Readers notice the new stamp and map the file again."""
    with atomic_write(folder / MANIFEST, "w", fsync=True) as fh:
        json.dump(asdict(manifest), fh, indent=1)


def remove_stale(folder: Path, keep: str | None) -> None:
    """Delete index files the manifest no longer names, leftovers of a crashed write, and
    the single file format 1 kept beside the folder (writers only: a reader never writes).
    A reader that still maps an old file keeps reading it: unlinking does not unmap."""
    (folder.parent / (folder.name + ".faiss")).unlink(missing_ok=True)
    for path in folder.glob("*.faiss"):
        if path.name != keep:
            path.unlink(missing_ok=True)
    for path in folder.glob(".*.tmp"):
        path.unlink(missing_ok=True)


def clear(folder: Path) -> None:
    """Forget the snapshot (the next open rebuilds from the store)."""
    (folder / MANIFEST).unlink(missing_ok=True)
    remove_stale(folder, keep=None)
