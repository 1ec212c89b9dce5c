"""Decoding and encoding on a real (local) Ray cluster: the same vectors and results as
indexing in process, and only the driver writes to the store."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from sqlalchemy import select

from indexer.pipeline import Indexer
from search.engine import Engine
from search.store import STATUS_FAILED, Embedding, File, Store

pytestmark = pytest.mark.slow  # starts a Ray cluster

pytest.importorskip("ray", reason="pip install -e '.[ray]'")


@pytest.fixture(scope="module")
def ray_cluster():
    import ray

    from indexer.ray_encode import connect

    connect("local")
    yield
    ray.shutdown()


def vectors(config) -> dict[str, np.ndarray]:
    with Store(config.db_url) as store, store.session() as s:
        rows = s.execute(select(File.path, Embedding.vector)
                         .join(Embedding, Embedding.content_id == File.content_id)).all()
    return {os.path.basename(p): np.frombuffer(v, np.float32) for p, v in rows}


def run(config, encoder, library):
    with Store(config.db_url) as store:
        return Indexer(config, store, encoder, progress=False).index([str(library)])


@pytest.mark.usefixtures("ray_cluster")
def test_ray_gives_the_vectors_and_results_of_a_local_run(make_config, offline, library,
                                                           tmp_path):
    (library / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    local = make_config(data_dir=str(tmp_path / "local"))
    on_ray = make_config(data_dir=str(tmp_path / "ray"), indexer__ray="local",
                         indexer__ray_workers=2, model__batch_size=4)
    want, got = run(local, offline, library), run(on_ray, offline, library)
    assert (got.encoded, got.failed) == (want.encoded, want.failed) == (12, 1)
    a, b = vectors(local), vectors(on_ray)
    assert a.keys() == b.keys() and len(a) == 12
    for name in a:
        assert np.allclose(a[name], b[name], atol=1e-5), name
    reasons = []
    for config in (local, on_ray):
        with Store(config.db_url) as store, store.session() as s:
            reasons.append(s.scalar(select(File.error).where(File.status == STATUS_FAILED)))
    assert reasons[0] and reasons[0] == reasons[1]  # the same reason, recorded by the driver
    for query in ("a cat", "a cup of coffee"):
        hits = [Engine(c, encoder=offline).search_text(query, 3) for c in (local, on_ray)]
        assert [r.path.split("/")[-1] for r in hits[0]] == [
            r.path.split("/")[-1] for r in hits[1]]
    again = run(on_ray, offline, library)  # nothing left to send to the cluster
    assert (again.encoded, again.unchanged) == (0, 13)


def test_missing_cluster_is_one_line(tmp_path, library):
    env = {**os.environ, "PIXSEEK_INDEXER_DECODE_WORKERS": "0"}
    proc = subprocess.run(
        [sys.executable, "-m", "pixseek", "--data-dir", str(tmp_path / "d"), "--model",
         "offline", "index", str(library), "--ray", "ray://127.0.0.1:1", "--json"],
        capture_output=True, text=True, env=env, timeout=300)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and "cannot join the Ray cluster" in lines[-1], proc.stderr
    assert "Traceback" not in proc.stderr
