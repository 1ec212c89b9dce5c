"""Disks a home server meets: a read-only library (a backup, a snapshot, a NAS share) is
searched, never written; a full disk is one line, loses nothing and the rerun finishes.

The file systems are real: a read-only bind mount and a small tmpfs. Mounting needs root
(as CI runs); elsewhere these tests skip and say so."""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import subprocess
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from search.config import load_config
from search.store import File, Store
from search.vectors import FaissIndex
from tests.e2e.test_cli import pixseek
from tests.search.test_vectors import MODEL, add_vectors, clustered

pytestmark = pytest.mark.slow  # mounts file systems, runs pixseek as processes


def _mount(*args: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs or a read-only bind needs root")
    proc = subprocess.run(["mount", *args], capture_output=True, text=True)
    if proc.returncode:
        pytest.skip(f"cannot mount here: {proc.stderr.strip()}")


@contextmanager
def read_only_view(source: Path, target: Path):
    """``source`` seen read-only at ``target`` (a bind mount, remounted read-only)."""
    target.mkdir(parents=True)
    _mount("--bind", str(source), str(target))
    try:
        _mount("-o", "remount,bind,ro", str(target))
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False)


@contextmanager
def small_disk(target: Path, size: str):
    target.mkdir(parents=True)
    _mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(target))
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=False)


def test_a_read_only_library_is_searched_and_never_written(tmp_path, library):
    data = tmp_path / "src" / "data"
    pixseek(data, "index", str(library))
    before = pixseek(data, "search", "a cat", "-k", "3", "--json").stdout
    with read_only_view(tmp_path / "src", tmp_path / "ro") as ro:
        ro_data = ro / "data"
        assert pixseek(ro_data, "search", "a cat", "-k", "3", "--json").stdout == before
        status = pixseek(ro_data, "status", "--json")
        assert '"indexed": 12' in status.stdout.replace("\n", " ").replace("  ", " ") or status
        for args in (("index", str(library)), ("gc",)):
            proc = pixseek(ro_data, *args, check=False)
            lines = proc.stderr.strip().splitlines()
            assert proc.returncode != 0 and len(lines) == 1, proc.stderr
            assert "read-only" in lines[0] and "Traceback" not in proc.stderr
        # The web UI answers from it too, never a 500.
        from webui import create_app

        config = load_config(None, overrides={"data_dir": str(ro_data), "model.name": "offline"},
                             environ={})
        client = create_app(config).test_client()
        answer = client.get("/api/search?q=a%20cat&k=3")
        assert answer.status_code == 200, answer.get_json()
        assert answer.get_json()["results"][0]["path"].endswith("chelsea_cat.png")


def test_a_missing_index_on_a_read_only_disk_is_built_in_memory(tmp_path, caplog):
    src = tmp_path / "src"
    src.mkdir()
    store = Store(f"sqlite:///{src / 'db.sqlite'}")
    vecs = clustered(1500)
    ids = add_vectors(store, vecs)
    store.close()
    with read_only_view(src, tmp_path / "ro") as ro:
        store = Store(f"sqlite:///{ro / 'db.sqlite'}")
        assert store.readonly
        with caplog.at_level(logging.WARNING):
            index = FaissIndex(store, MODEL, ro / "data", verify=False).open()
        assert index.in_memory and "built in memory" in caplog.text
        scores, found = index.search(vecs[:50], 1)
        np.testing.assert_array_equal(found[:, 0], ids[:50])
        store.close()
    assert not (src / "data").exists()


def _fill(disk: Path, leave: int) -> Path:
    """A file that takes all but ``leave`` bytes of ``disk``."""
    filler = disk / "filler"
    free = shutil.disk_usage(disk).free
    with open(filler, "wb") as fh:
        fh.truncate(0)
        fh.write(b"\0" * max(0, free - leave))
    return filler


@pytest.mark.parametrize("leave", [16 * 1024, 64 * 1024])  # at open; part way through
def test_indexing_into_a_full_disk_is_one_line_and_loses_nothing(tmp_path, library, leave):
    with small_disk(tmp_path / "disk", "4m") as disk:
        data = disk / "data"
        pixseek(data, "db", "upgrade")
        filler = _fill(disk, leave)
        proc = pixseek(data, "index", str(library), check=False)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode != 0 and len(lines) <= 3, proc.stderr
        assert "Traceback" not in proc.stderr and "is full" in proc.stderr
        assert str(data) in proc.stderr
        assert not [p for p in data.rglob("*") if p.name.endswith(".tmp")]
        filler.unlink()  # (even a reader of a WAL database needs room for its index file)
        db = sqlite3.connect(data / "pixseek.db")
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        db.close()
        pixseek(data, "index", str(library))
        store = Store(f"sqlite:///{data / 'pixseek.db'}")
        with store.session() as s:
            paths = [f.path for f in s.query(File).filter(File.status == "ok")]
        store.close()
        assert len(paths) == len(set(paths)) == 12
