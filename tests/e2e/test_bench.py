"""``pixseek bench retrieval`` on the captioned sample photos with the offline model."""

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from pixseek.cli import cli
from search.encoders.offline import MODEL_ID as OFFLINE_ID
from search.evaluation.captions import load_caption_set
from search.store import Embedding, File, Store

pytestmark = pytest.mark.slow  # runs the retrieval benchmark


def invoke(data, *args):
    return CliRunner().invoke(cli, ["--data-dir", str(data), *args], catch_exceptions=False)


@pytest.fixture(scope="module")
def bench_set(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bench-set")
    result = CliRunner().invoke(cli, ["bench", "samples", str(folder)])
    assert result.exit_code == 0, result.output
    return folder


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory, bench_set):
    data = tmp_path_factory.mktemp("bench-data")
    out = data / "out"
    result = invoke(
        data, "bench", "retrieval", "--captions", str(bench_set / "captions.csv"),
        "--images", str(bench_set), "--model", "offline",
        "--json", str(out / "r.json"), "--markdown", str(out / "r.md"),
    )
    assert result.exit_code == 0, result.output
    return data, out, result.output


def test_json_has_recalls_per_direction(bench_run):
    _, out, _ = bench_run
    res = json.loads((out / "r.json").read_text())
    m = res["models"]["offline"]
    for direction in ("text_to_image", "image_to_text"):
        for key in ("R@1", "R@5", "R@10"):
            assert 0.0 <= m[direction][key] <= 1.0
        assert m[direction]["R@1"] <= m[direction]["R@5"] <= m[direction]["R@10"]
        assert m[direction]["median_rank"] >= 1
    assert res["n_captions"] == 3 * res["n_images"]


def test_table_and_markdown(bench_run):
    _, out, output = bench_run
    res = json.loads((out / "r.json").read_text())
    r1 = res["models"]["offline"]["text_to_image"]["R@1"]
    assert f"{100 * r1:.1f}" in output and "text->image" in output
    assert "| offline | text → image |" in (out / "r.md").read_text()


def test_numbers_equal_a_direct_numpy_computation(bench_run, bench_set, offline):
    data, out, _ = bench_run
    res = json.loads((out / "r.json").read_text())["models"]["offline"]
    caps = load_caption_set(bench_set / "captions.csv")
    store = Store(f"sqlite:///{data / 'bench' / 'pixseek.db'}")
    with store.session() as s:
        rows = dict(
            s.execute(
                File.__table__.join(Embedding.__table__, Embedding.content_id == File.content_id)
                .select()
                .with_only_columns(File.path, Embedding.vector)
                .where(Embedding.model == OFFLINE_ID)
            ).all()
        )
    store.close()
    images = np.stack(
        [np.frombuffer(rows[str((bench_set / i).resolve())], "<f4") for i in caps.images]
    )
    texts = offline.encode_texts(caps.captions)
    sims = texts @ images.T
    own = np.asarray(caps.caption_image)
    # Rank of each caption's image: 1 + images scoring at least as high (other than itself).
    ranks = 1 + (sims >= sims[np.arange(len(own)), own][:, None]).sum(axis=1) - 1
    for k in (1, 5, 10):
        assert res["text_to_image"][f"R@{k}"] == pytest.approx(np.mean(ranks <= k))
    assert res["text_to_image"]["median_rank"] == pytest.approx(np.median(ranks))


def test_second_run_reuses_stored_vectors(bench_run, bench_set):
    data, _, _ = bench_run
    result = invoke(
        data, "bench", "retrieval", "--captions", str(bench_set / "captions.csv"),
        "--images", str(bench_set), "--model", "offline", "--json", str(data / "again.json"),
    )
    assert result.exit_code == 0
    m = json.loads((data / "again.json").read_text())["models"]["offline"]
    assert m["images_encoded"] == 0 and m["images_reused"] == json.loads(
        (data / "again.json").read_text()
    )["n_images"]


def karpathy(tmp_path, images, split="test"):
    data = {
        "dataset": "flickr30k",
        "images": [
            {"filename": name, "split": split, "sentences": [{"raw": f"photo {name}"}]}
            for name in images
        ],
    }
    path = tmp_path / "dataset_flickr30k.json"
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing_image", "1 of 2 images named in"),
        ("unreadable", "nope.csv"),
        ("empty_split", "split"),
        ("unknown_model", "cannot load model 'org/no-such-model'"),
        ("bad_image", "could not be decoded"),
    ],
)
def test_bad_input_is_one_message_and_nothing_written(tmp_path, bench_set, case, message):
    images = tmp_path / "imgs"
    images.mkdir()
    shutil.copy2(next(bench_set.glob("*.png")), images / "a.png")
    captions, model = karpathy(tmp_path, ["a.png"]), "offline"
    if case == "missing_image":
        captions = karpathy(tmp_path, ["a.png", "b.png"])
    elif case == "unreadable":
        captions = tmp_path / "nope.csv"
    elif case == "empty_split":
        captions = karpathy(tmp_path, ["a.png"], split="train")
    elif case == "unknown_model":
        model = "org/no-such-model"
    elif case == "bad_image":
        (images / "b.png").write_text("not a png")
        captions = karpathy(tmp_path, ["a.png", "b.png"])
    out = tmp_path / "out.json"
    result = CliRunner().invoke(cli, [
        "--data-dir", str(tmp_path / "d"), "bench", "retrieval", "--captions", str(captions),
        "--images", str(images), "--model", model, "--json", str(out),
    ])
    # Bad input is a usage error (2), like a bad flag; a model that cannot load fails (1).
    assert result.exit_code == (1 if case == "unknown_model" else 2)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.output
    assert not out.exists()
