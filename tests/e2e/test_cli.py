"""The pixseek command as a person runs it: real processes, real files, real kill -9."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import delete, func, select

from search.store import Embedding, File, Store
from tests import cli

pytestmark = pytest.mark.slow  # runs pixseek as processes


def pixseek(data: Path, *args: str, env: dict | None = None, check: bool = True):
    return cli.pixseek(data, *args, env=env, check=check, workers=1, timeout=120)


@pytest.fixture(scope="module")
def indexed(tmp_path_factory, samples):
    """One library indexed through the CLI, shared by the read-only tests below."""
    from tests.library import copy_library

    root = tmp_path_factory.mktemp("cli")
    lib = copy_library(root / "photos", samples)
    (lib / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    proc = pixseek(root / "data", "index", str(lib), "--json")
    return root / "data", lib, json.loads(proc.stdout)


def test_index_json_summary(indexed):
    _, _, summary = indexed
    assert summary["encoded"] == 12 and summary["failed"] == 1
    assert {"encoded", "reused", "removed", "failed"} <= summary.keys()


def test_search_json_is_ranked_paths_with_cosine_scores(indexed):
    data, lib, _ = indexed
    results = json.loads(pixseek(data, "search", "a cat", "-k", "5", "--json").stdout)
    assert len(results) == 5
    assert Path(results[0]["path"]).name == "chelsea_cat.png"
    scores = [r["score"] for r in results]
    assert scores == sorted(scores, reverse=True) and all(-1 <= s <= 1 for s in scores)


def test_search_plain_output(indexed):
    data, lib, _ = indexed
    lines = pixseek(data, "search", "a motorbike", "-k", "2").stdout.splitlines()
    assert len(lines) == 2 and lines[0].split(maxsplit=1)[1].endswith("yamaha_motorcycle.png")


def test_search_by_example_image(indexed):
    data, lib, _ = indexed
    query = lib / "espresso_cup.png"
    results = json.loads(pixseek(data, "search", "--image", str(query), "--json").stdout)
    assert results[0]["path"] == str(query) and results[0]["score"] > 0.999


def test_search_options_from_the_shell(indexed):
    data, lib, _ = indexed
    cat = json.loads(pixseek(data, "search", "a cat", "-k", "1", "--json").stdout)[0]
    assert cat["strong"] is True and Path(cat["path"]).name == "chelsea_cat.png"
    # Like the cat photo, but not cats, under the library folder, second page of 3.
    proc = pixseek(data, "search", "--similar", str(cat["id"]), "--not", "a cat", "--folder",
                   str(lib), "--sort", "newest", "-k", "3", "--offset", "3", "--json")
    page = json.loads(proc.stdout)
    assert len(page) == 3 and cat["id"] not in {r["id"] for r in page}
    assert all({"strong", "date", "score", "path"} <= r.keys() for r in page)


def test_plain_output_marks_where_strong_matches_end(indexed):
    data, _, _ = indexed
    proc = pixseek(data, "search", "a cat", "-k", "4")
    assert len(proc.stdout.splitlines()) == 4  # one "score  path" line per result
    assert "-- weaker matches below --" in proc.stderr and "--offset 4" in proc.stderr
    proc = pixseek(data, "search", "asdfghjkl qwerty", "-k", "2")
    assert "nothing matches well" in proc.stderr and len(proc.stdout.splitlines()) == 2
    assert "--offset" not in proc.stderr  # no "more" after nothing strong, as on the page


def test_classify_is_a_softmax_over_labels(indexed):
    data, lib, _ = indexed
    out = pixseek(data, "classify", str(lib / "chelsea_cat.png"), "a dog", "a cat", "a car",
                  "--json").stdout
    ranked = json.loads(out)
    assert ranked[0]["label"] == "a cat"
    assert sum(r["probability"] for r in ranked) == pytest.approx(1.0, abs=1e-6)


def test_status_json(indexed):
    data, _, _ = indexed
    info = json.loads(pixseek(data, "status", "--json").stdout)
    assert (info["files"], info["indexed"], info["failed"]) == (13, 12, 1)
    assert info["index_current"] is True
    assert info["failures"][0]["path"].endswith("broken.jpg")


@pytest.mark.parametrize("model", ["offline", "tiny-clip"])
def test_status_does_not_import_torch(tmp_path, indexed, tiny_clip_dir, model):
    """``pixseek status`` reads the library and the cached model choices: torch's import
    (a second of its two) is not needed for that on a machine with no GPU device."""
    from search.encoders.base import no_gpu_device

    if not no_gpu_device():
        pytest.skip("not Linux, or a GPU device is present: device auto asks torch")
    data, _, _ = indexed
    expect = None
    if model != "offline":  # with auto's pair cached, as the loaded model wrote it
        from search.encoders import canonical_model_id, runtime_choice, runtimes

        data, model = tmp_path / "data", str(tiny_clip_dir)
        expect = {"runtime": "openvino", "precision": "int8-static", "reason": "auto: cached"}
        runtime_choice.write_choice(data, canonical_model_id(model), "cpu",
                                    list(runtimes.RUNTIMES), expect)
    code = (
        "import contextlib, io, json, sys\n"
        "from pixseek.cli import main\n"
        f"sys.argv = ['pixseek', '--data-dir', {str(data)!r}, '--model', {model!r},"
        " 'status', '--json']\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out):\n"
        "    try:\n"
        "        main()\n"
        "    except SystemExit as exc:\n"
        "        assert not exc.code, exc.code\n"
        "info = json.loads(out.getvalue())\n"
        "print(json.dumps(info['runtime']))\n"
        "assert 'torch' not in sys.modules, 'status imported torch'\n"
    )
    env = {**os.environ, "PIXSEEK_MODEL_RUNTIME": "auto", "PIXSEEK_MODEL_PRECISION": "auto"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, cwd=Path(__file__).resolve().parents[2], timeout=120)
    assert proc.returncode == 0, proc.stderr
    runtime = json.loads(proc.stdout)
    assert runtime["setting"] == "auto" and runtime["reason"]
    if expect is not None:
        assert (runtime["in_use"], runtime["precision"]) == (expect["runtime"],
                                                             expect["precision"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["search", "   "], "the query is empty"),
        (["search", "x" * 5000], "the limit is 1000"),
        (["search", "--image", "/nonexistent.jpg"], "cannot read the query image"),
        (["search", "cat", "--after", "last week"], "after must be a date like 2024-06-30"),
        (["search", "--similar", "999999"], "is not a photo in the library"),
        (["search", "2:cat - 2:cat"], "cancel each other out"),
        (["index", "/no/such/folder"], "no such file or folder"),
        (["--model", "org/not-a-model", "search", "cat"], "no vectors for the model org/not-a"),
        (["serve", "--host", "0.0.0.0"], "refusing to serve on 0.0.0.0 without an access token"),
    ],
)
def test_bad_input_is_one_clear_line(indexed, args, message):
    data, _, _ = indexed
    proc = pixseek(data, *args, check=False)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_invalid_config_names_the_key(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model:\n  batch_size: -1\n")
    proc = pixseek(tmp_path, "--config", str(cfg), "status", check=False)
    assert proc.returncode != 0 and "model.batch_size" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_search_exact_matches_the_index(indexed):
    data, _, _ = indexed
    plain = json.loads(pixseek(data, "search", "a cat", "-k", "5", "--json").stdout)
    exact = json.loads(pixseek(data, "search", "a cat", "-k", "5", "--exact", "--json").stdout)
    assert [r["id"] for r in plain] == [r["id"] for r in exact]


def test_gc_removes_photos_whose_files_are_gone(tmp_path, library):
    data = tmp_path / "data"
    pixseek(data, "index", str(library))
    # Files deleted behind pixseek's back, with no index run since (or an older version's
    # leftovers): their rows go, and gc finds the contents nothing shows any more.
    store = Store(f"sqlite:///{data / 'pixseek.db'}")
    with store.session() as s:
        s.execute(delete(File).where(File.path.like("%chelsea%")))
    store.close()
    report = json.loads(pixseek(data, "gc", "--json").stdout)
    assert report["contents"] == 1 and list(report["vectors"].values()) == [1]
    assert json.loads(pixseek(data, "gc", "--json").stdout)["contents"] == 0
    results = json.loads(pixseek(data, "search", "a cat", "-k", "20", "--json").stdout)
    assert len(results) == 11 and not any("chelsea" in r["path"] for r in results)
    assert "removed 0 photos" in pixseek(data, "gc").stdout


def test_db_upgrade(tmp_path):
    from search.migrate import head_revision

    assert head_revision() == "0005"
    assert "revision 0005" in pixseek(tmp_path / "d", "db", "upgrade").stdout


def test_killed_run_resumes_with_nothing_lost_or_duplicated(tmp_path, library, database):
    data = tmp_path / "data"
    url = database or f"sqlite:///{data / 'pixseek.db'}"
    db_env = {"PIXSEEK_DATABASE_URL": database} if database else {}
    # The child kills itself right after its second batch commits: the patch lives in the
    # test, not in the product.
    child = (
        "import os, signal, sys\n"
        "from indexer.pipeline import Indexer\n"
        "commit = Indexer._commit_batch\n"
        "def commit_then_die(self, batch, summary):\n"
        "    commit(self, batch, summary)\n"
        "    if self.batches_committed == 2:\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "Indexer._commit_batch = commit_then_die\n"
        "from pixseek.cli import main\n"
        "sys.argv = ['pixseek', *sys.argv[1:]]\n"
        "main()\n"
    )
    env = {**os.environ, "PIXSEEK_INDEXER_DECODE_WORKERS": "1", "PIXSEEK_MODEL_BATCH_SIZE": "3",
           **db_env}
    proc = subprocess.run(
        [sys.executable, "-c", child, "--data-dir", str(data), "--model", "offline", "index",
         str(library), "--json"], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    store = Store(url)
    with store.session() as s:
        committed = s.scalar(select(func.count(Embedding.id)))
    assert committed == 6  # two batches of three made it, the rest was lost mid-flight

    summary = json.loads(pixseek(data, "index", str(library), "--json", env=db_env).stdout)
    assert summary["encoded"] == 12 - committed and summary["unchanged"] == committed
    with store.session() as s:
        assert s.scalar(select(func.count(Embedding.id))) == 12
        assert s.scalar(select(func.count(File.id))) == 12
    store.close()
    info = json.loads(pixseek(data, "status", "--json", env=db_env).stdout)
    assert (info["indexed"], info["index_current"]) == (12, True)
