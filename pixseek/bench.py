"""``pixseek bench retrieval``: text-to-image / image-to-text Recall@K for one or more models.

Images go through the normal indexing pipeline into a store of their own
(``<data_dir>/bench``), so a second run, or a second benchmark over the same images, reuses
the stored vectors, and benchmark images never show up in the library's searches. Captions
are encoded in batches. The metrics (search.evaluation) are computed from the stored
vectors; outputs are written only once every model has finished, each file atomically.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from indexer.pipeline import Indexer
from indexer.session import locked_store
from search.config import Config
from search.encoders import Encoder, load_encoder
from search.errors import InputError
from search.evaluation.captions import CaptionSet, load_caption_set
from search.evaluation.metrics import retrieval_metrics
from search.evaluation.published import compare, known_datasets, published
from search.files import atomic_write
from search.store import Store

TEXT_BATCH = 256


def stored_image_vectors(store: Store, model: str, paths: list[Path]) -> np.ndarray:
    """The model's vectors for these files, in order; a file that failed is an error."""
    wanted = [str(p.resolve()) for p in paths]
    found, failed = store.vectors_for_paths(model, wanted)
    if failed:
        first = next(iter(failed.items()))
        raise InputError(
            f"{len(failed)} benchmark images could not be decoded, e.g. {first[0]}: {first[1]}"
        )
    missing = [p for p in wanted if p not in found]
    if missing:
        raise InputError(f"{len(missing)} images have no vector after indexing, e.g. {missing[0]}")
    return np.stack([found[p] for p in wanted])


def encode_captions(encoder: Encoder, captions: list[str]) -> np.ndarray:
    parts = [
        encoder.encode_texts(captions[i:i + TEXT_BATCH])
        for i in range(0, len(captions), TEXT_BATCH)
    ]
    return np.concatenate(parts)


def infer_dataset(captions: CaptionSet) -> str | None:
    head = captions.name.split("-")[0].lower()
    return head if head in known_datasets() else None


def run_retrieval(
    config: Config,
    captions_file: Path,
    images_dir: Path,
    models: list[str],
    split: str | None = "test",
    dataset: str | None = None,
    with_published: bool = False,
    progress: bool | None = None,
) -> tuple[dict, dict]:
    """Returns (results, comparisons) ready for search.evaluation.report."""
    captions = load_caption_set(captions_file, split=split)
    paths = captions.paths(images_dir)
    dataset = dataset or infer_dataset(captions)
    bench_config = config.model_copy(update={"data_dir": config.data_path / "bench"})
    if config.database_url:
        bench_config = bench_config.model_copy(update={"database_url": None})
    results: dict = {
        "dataset": dataset or captions.name,
        "captions_file": str(captions_file),
        "split": split,
        "n_images": captions.n_images,
        "n_captions": captions.n_captions,
        "models": {},
    }
    comparisons: dict = {}
    with locked_store(bench_config) as store:
        for name in models:
            metrics = _evaluate(name, config, bench_config, store, paths, captions, progress)
            results["models"][name] = metrics
            model_id = metrics["model_id"]
            if with_published and dataset and published(model_id, dataset):
                comparisons[name] = compare(metrics, model_id, dataset)
    return results, comparisons


def _evaluate(
    name: str,
    config: Config,
    bench_config: Config,
    store: Store,
    paths: list[Path],
    captions: CaptionSet,
    progress: bool | None,
) -> dict:
    """Index the images with one model, encode the captions, compute the metrics."""
    started = time.perf_counter()
    encoder = load_encoder(
        config.model.model_copy(update={"name": name}), cache_dir=config.data_path
    )
    summary = Indexer(bench_config, store, encoder, progress=progress).index_files(paths)
    image_vecs = stored_image_vectors(store, encoder.model_id, paths)
    text_vecs = encode_captions(encoder, captions.captions)
    metrics = retrieval_metrics(text_vecs, image_vecs, captions.caption_image)
    metrics["model_id"] = encoder.model_id
    metrics["images_encoded"] = summary.encoded
    metrics["images_reused"] = summary.reused + summary.unchanged
    metrics["seconds"] = round(time.perf_counter() - started, 2)
    return metrics


def write_atomic(path: Path, text: str) -> None:
    with atomic_write(path) as fh:
        fh.write(text.encode("utf-8"))


def results_json(results: dict, comparisons: dict) -> str:
    out = dict(results)
    if comparisons:
        out["published"] = comparisons
    return json.dumps(out, indent=2) + "\n"
