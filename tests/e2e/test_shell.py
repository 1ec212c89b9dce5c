"""The command beside a running server: it asks ``pixseek serve`` for the same library and
prints exactly what it prints in process; the library remembers its model; a model that is
neither cached nor reachable fails at once."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from search import server_file

TOKEN = "a-token-only-the-owner-reads"


def run(data: Path, *args: str):
    """The command as a person types it: no --model (the library's own is used)."""
    cmd = [sys.executable, "-m", "pixseek", "--data-dir", str(data), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def served(tmp_path_factory, samples, offline):
    """A library indexed with the offline model (in process), and a serve for it started
    without --model, with an access token (which the command reads from the server file)."""
    from indexer.session import open_indexer
    from search.config import load_config
    from search.samples import copy_sample_photos

    root = tmp_path_factory.mktemp("shell")
    photos = root / "photos"
    copy_sample_photos(photos, photos=[p for p in samples if "/usr/share" not in str(p.path)][:6])
    data = root / "data"
    config = load_config(overrides={"data_dir": str(data), "model.name": "offline"})
    with open_indexer(config, encoder=offline) as indexer:
        indexer.index([str(photos)])
    proc = subprocess.Popen(
        [sys.executable, "-m", "pixseek", "--data-dir", str(data), "serve", "--port", "0",
         "--token", TOKEN],
        stdout=subprocess.DEVNULL, stderr=(root / "serve.log").open("w"))
    deadline = time.monotonic() + 120
    while server_file.read(data) is None:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"serve did not start: {(root / 'serve.log').read_text()}")
        time.sleep(0.2)
    yield data, proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_search_through_serve_prints_what_in_process_prints(served):
    data, _ = served
    for args in (["a cat", "-k", "3"], ["a cat", "-k", "2", "--json"],
                 ["asdfghjkl qwerty", "-k", "2"], ["a cat", "-k", "3", "--sort", "newest"],
                 ["a cat in 2020", "-k", "2"]):
        remote = run(data, "-v", "search", *args)
        local = run(data, "search", *args, "--local")
        assert remote.returncode == local.returncode == 0, remote.stderr + local.stderr
        assert "answered by the pixseek serve" in remote.stderr
        assert remote.stdout == local.stdout
        assert remote.stdout.strip() or "understood:" in local.stderr  # no photo from 2020
        shown = [ln for ln in remote.stderr.splitlines() if not ln.startswith("INFO")]
        assert shown == local.stderr.splitlines()


def test_status_and_errors_through_serve_match_in_process(served):
    data, _ = served
    remote, local = run(data, "-v", "status"), run(data, "status", "--local")
    assert "answered by the pixseek serve" in remote.stderr
    assert remote.stdout == local.stdout and "offline" in remote.stdout
    remote, local = run(data, "search", "cat", "-k", "0"), run(data, "search", "cat", "-k",
                                                                 "0", "--local")
    assert remote.returncode == local.returncode == 2
    assert remote.stderr == local.stderr
    assert "k must be a whole number from 1 to 1000, not '0'" in remote.stderr


def test_a_library_names_its_models_for_one_it_lacks(served):
    data, _ = served
    proc = run(data, "--model", "org/not-a-model", "search", "a cat")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "no vectors for the model org/not-a-model; it has offline (6 photos)" in lines[0]
    assert "pixseek --model org/not-a-model index FOLDER" in lines[0]


def test_the_server_file_is_private_and_goes_with_the_server(served):
    data, proc = served
    path = data / server_file.NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    info = json.loads(path.read_text())
    assert info["pid"] == proc.pid and info["url"].startswith("http://127.0.0.1:")
    assert info["token"] == TOKEN
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    assert not path.exists()
    # A file left by a server that died is ignored.
    path.write_text(json.dumps({**info, "pid": 2**22 + 12345}))
    assert server_file.read(data) is None


def test_an_uncached_model_without_a_hub_fails_at_once(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "pixseek", "--data-dir", str(tmp_path), "--model",
         "org/not-a-model", "search", "a cat"],
        capture_output=True, text=True, env={**env, "HF_ENDPOINT": "http://127.0.0.1:9"},
        timeout=60)
    took = time.monotonic() - started
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) <= 3 and "Traceback" not in proc.stderr, proc.stderr
    assert "org/not-a-model" in lines[0] and "--model offline" in lines[0]
    assert took < 15, took
