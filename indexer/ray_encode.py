"""Decoding and encoding on a Ray cluster (``pixseek index --ray [ADDRESS]``).

Ray Data runs the two stages apart: decode tasks (``run_decode_job``, the same job the local
decode workers run) scale with the cluster's CPUs, and a pool of actors, each holding the
model once on its GPU or CPU, encodes their output. Only vectors and image metadata come
back to the driver; the driver alone writes to the store, one transaction per batch as in
a local run, so a killed driver or worker loses nothing committed.

Ray is optional (``pip install 'pixseek[ray]'``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from indexer.decode import DecodeJob, run_decode_job
from search.config import ModelConfig
from search.errors import ConfigError, DependencyError, first_line
from search.preprocess import BadImage, Decoded

log = logging.getLogger(__name__)

INSTALL = "pip install 'pixseek[ray]'"
# Contents sent to the cluster per Ray dataset: bounds the driver's memory (architecture
# invariant 7); each dataset starts its actor pool, which loads the model once per actor.
GROUP = 4096
# What one decode task asks of the scheduler: less than an actor's CPU, so that Ray keeps
# the two stages apart instead of fusing decoding into the actors.
DECODE_CPUS = 0.5


@dataclass
class RayResult:
    """What comes back for one decode job: its metadata and vector, or why it failed."""

    decoded: Decoded | None  # pixels dropped
    vector: np.ndarray | None
    error: str | None


def connect(address: str | None) -> None:
    """Join the cluster at ``address`` ("auto": the one this host belongs to), or start a
    local one for ``None``/"local". One line when Ray is missing or unreachable."""
    try:
        import ray
    except ImportError:
        raise DependencyError(f"--ray needs Ray: {INSTALL}") from None
    if ray.is_initialized():
        return
    quiet = {"log_to_driver": False, "logging_level": logging.WARNING}
    try:
        if address in (None, "", "local"):
            ray.init(include_dashboard=False, num_cpus=os.cpu_count(), **quiet)
        else:
            ray.init(address=address, **quiet)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ConfigError(
            f"--ray: cannot join the Ray cluster at {address!r}: {first_line(exc)}"
        ) from None


def _decode_batch(batch: dict) -> dict:
    """A Ray Data task: decode a batch of jobs to uint8 pixels, or the reason they failed."""
    import pickle

    # Columns of bytes and strings only: Arrow would turn arrays into tensor columns and
    # refuses a missing one.
    pixels, meta, errors = [], [], []
    for blob in batch["job"]:
        result = run_decode_job(pickle.loads(blob))
        if isinstance(result, BadImage):
            pixels.append(b"")
            meta.append(b"")
            errors.append(str(result))
        else:
            pixels.append(pickle.dumps(result.pixels))
            result.pixels = None
            meta.append(pickle.dumps(result))
            errors.append("")
    return {"key": batch["key"], "pixels": pixels, "meta": meta, "error": errors}


class _EncodeActor:
    """A Ray actor: the model, loaded once, encoding decoded batches."""

    def __init__(self, model: ModelConfig, cache_dir: str | None) -> None:
        from search.encoders import load_encoder

        self.encoder = load_encoder(model, cache_dir=cache_dir)

    def __call__(self, batch: dict) -> dict:
        import pickle

        ok = [i for i, e in enumerate(batch["error"]) if not e]
        vectors: list[bytes] = [b""] * len(batch["error"])
        if ok:
            pixels = np.stack([pickle.loads(batch["pixels"][i]) for i in ok])
            encoded = self.encoder.encode_pixels(pixels)
            for i, vec in zip(ok, encoded, strict=True):
                vectors[i] = np.asarray(vec, np.float32).tobytes()
        return {"key": batch["key"], "meta": batch["meta"], "error": batch["error"],
                "vector": vectors}


def encode_on_ray(
    jobs: Iterable[tuple[int, DecodeJob]],
    model: ModelConfig,
    *,
    batch_size: int,
    workers: int,
    cache_dir: str | None = None,
) -> Iterator[tuple[int, RayResult]]:
    """(key, result) for every (key, job), in order, decoded and encoded on the cluster
    (``connect`` first). ``workers``: encoding actors (one per GPU or per share of CPUs)."""
    import pickle

    import ray.data

    # Ray Data narrates every dataset at INFO (set up when it is imported); the indexer's
    # own progress is enough.
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True  # results line up with the driver's batches
    ctx.enable_progress_bars = False
    it = iter(jobs)
    while True:
        group = [job for _, job in zip(range(GROUP), it, strict=False)]
        if not group:
            return
        rows = [{"key": key, "job": pickle.dumps(job)} for key, job in group]
        ds = ray.data.from_items(rows, override_num_blocks=max(1, len(rows) // batch_size))
        # Decode tasks ask for half a CPU and the actors for a whole one (or a GPU): Ray
        # then keeps the two stages apart instead of fusing decoding into the actors, and
        # decoding scales with the cluster's CPUs while each actor holds its model.
        ds = ds.map_batches(_decode_batch, batch_size=batch_size, batch_format="default",
                            num_cpus=DECODE_CPUS)
        gpus = 1 if model.device in ("auto", "cuda") and _cluster("GPU") else 0
        ds = ds.map_batches(
            _EncodeActor, fn_constructor_args=(model, cache_dir), batch_size=batch_size,
            compute=ray.data.ActorPoolStrategy(size=workers), batch_format="default",
            num_cpus=0 if gpus else _cpus_per_actor(workers), num_gpus=gpus,
        )
        for batch in ds.iter_batches(batch_size=None, batch_format="default"):
            for key, meta, error, vec in zip(batch["key"], batch["meta"], batch["error"],
                                             batch["vector"], strict=True):
                if error:
                    yield int(key), RayResult(None, None, str(error))
                else:
                    yield int(key), RayResult(pickle.loads(meta),
                                              np.frombuffer(vec, np.float32), None)


def _cluster(resource: str) -> float:
    import ray

    return float(ray.cluster_resources().get(resource, 0))


def _cpus_per_actor(workers: int) -> float:
    """CPU actors leave half a CPU free for decode tasks: actors that took every CPU
    would wait forever for decoded batches no task could be scheduled to make."""
    spare = _cluster("CPU") - DECODE_CPUS
    return max(0.1, min(1.0, spare / workers))
