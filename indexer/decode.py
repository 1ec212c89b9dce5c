"""Work done in decode worker processes: read, verify the hash, decode, preprocess.

Only Pillow and numpy are imported here, so spawned workers start fast and carry no torch.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from search.preprocess import BadImage, Decoded, PreprocessSpec, decode

HASH_CHUNK = 1 << 20
T = TypeVar("T")
R = TypeVar("R")


def _hasher() -> hashlib.blake2b:
    """blake2b-128: a content's identity (architecture invariant 3); defined once, used twice."""
    return hashlib.blake2b(digest_size=16)


def content_hash(path: str) -> str:
    """The content hash of a file, read in chunks."""
    h = _hasher()
    with open(path, "rb") as fh:
        while chunk := fh.read(HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class DecodeJob:
    path: str
    expected_hash: str
    spec: PreprocessSpec
    max_pixels: int
    draft: bool


def run_decode_job(job: DecodeJob) -> Decoded | BadImage:
    """Decoded pixels, or why the file is bad (returned, not raised: it crosses from a
    worker process, and one bad file must not end the map).

    The pixels are uint8 [3, H, W], resized and cropped; the encoder normalises them on its
    device (``Encoder.encode_pixels``). Pickled, that is 150 KB at 224 px, not 602 KB.
    """
    try:
        with open(job.path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        return BadImage.unreadable(exc)
    h = _hasher()
    h.update(data)
    if h.hexdigest() != job.expected_hash:
        # Half-written or edited meanwhile: its mtime changes again, so it is retried.
        return BadImage("file changed while it was being read (still being written?)")
    try:
        return decode(data, job.spec, max_pixels=job.max_pixels, draft=job.draft, uint8=True)
    except BadImage as exc:
        return exc


# Niceness of decode workers beside a model on the CPU: the model's threads wait for each
# other at every layer, so a worker that takes a core from one of them stalls them all;
# at a lower priority the workers fill the cycles the model leaves, and still get the ~10 %
# of 2 cores they need (benchmarks/README.md: 1-3 % more photos/s on 2 cores).
YIELD_NICENESS = 10


def worker_init(yield_cpu: bool = False) -> None:
    """Run in each decode worker: exit when the indexer dies, even by kill -9; with
    ``yield_cpu``, run below the model's priority (``YIELD_NICENESS``).

    A killed parent cannot shut its pool down, and the workers would wait on their queue
    forever, holding the terminal's pipes open. Polling the parent id works everywhere.
    """
    if yield_cpu and hasattr(os, "nice"):
        os.nice(YIELD_NICENESS)
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def decode_pool(workers: int, model_device: str | None = None) -> ProcessPoolExecutor:
    """Decode worker processes that exit with their parent (``worker_init``), below the
    model's priority when ``model_device`` is the CPU they share with it."""
    # spawn, not fork: forking a process that holds torch's threads can deadlock.
    return ProcessPoolExecutor(
        workers, mp_context=multiprocessing.get_context("spawn"), initializer=worker_init,
        initargs=(model_device == "cpu",),
    )


def started_pool(workers: int, model_device: str | None = None) -> ProcessPoolExecutor:
    """``decode_pool`` with its workers starting now: a pool starts one per job submitted
    while none is idle, so ``workers`` empty jobs start them all, without waiting."""
    pool = decode_pool(workers, model_device)
    for _ in range(workers):
        pool.submit(int)
    return pool


def ordered_map(
    executor: Executor | None, fn: Callable[[T], R], items: Iterable[T], window: int
) -> Iterator[R]:
    """``map`` in order with at most ``window`` jobs in flight: bounded memory, busy workers."""
    if executor is None:
        yield from map(fn, items)
        return
    pending: deque = deque()
    for item in items:
        pending.append(executor.submit(fn, item))
        if len(pending) >= window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()
