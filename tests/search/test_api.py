"""The documented Python API (README, search/__init__.py) and the package boundaries."""

import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def test_readme_python_api(tmp_path, library):
    from indexer.pipeline import Indexer
    from search import Engine, Store, load_config, load_encoder

    encoder = load_encoder("offline")
    vectors = encoder.encode_texts(["a dog on a beach"])
    assert vectors.shape == (1, 384) and np.isclose(np.linalg.norm(vectors), 1)

    config = load_config(
        overrides={"data_dir": str(tmp_path / "library-data"), "model.name": "offline"},
        environ={},
    )
    Indexer(config, Store(config.db_url), encoder, progress=False).index([library])
    engine = Engine(config)
    results = engine.search_text("a cat", k=5)
    assert len(results) == 5 and Path(results[0].path).name == "chelsea_cat.png"
    assert results[0].score >= results[-1].score


def test_decode_workers_do_not_load_torch():
    code = (
        "import sys, search, search.preprocess, indexer.decode; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
