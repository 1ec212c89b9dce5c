"""The watcher on a real folder with real inotify events, a real model and a real store."""

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from PIL import Image, ImageOps
from sqlalchemy import select

from indexer.pipeline import Indexer
from indexer.watch import Watcher
from search.store import STATUS_OK, File, Store

pytestmark = pytest.mark.slow  # waits for a watcher


def indexed_paths(store: Store) -> set[str]:
    with store.session() as s:
        return set(s.execute(select(File.path).where(File.status == STATUS_OK)).scalars())


def wait_for(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the watcher")
        time.sleep(0.1)


@pytest.fixture
def watching(make_config, offline, library, database):
    """A watcher thread on ``library``, on each database (``database``)."""
    config = make_config(watch__settle_seconds=0.3)
    store = Store(config.db_url)
    watcher = Watcher(Indexer(config, store, offline, progress=False), [library])
    thread = threading.Thread(target=watcher.run, daemon=True)
    thread.start()
    assert watcher.ready.wait(120)
    yield store, library
    watcher.stop()
    thread.join(60)
    assert not thread.is_alive()
    store.close()


def test_watcher_follows_adds_moves_and_deletes(watching):
    store, lib = watching
    assert len(indexed_paths(store)) == 12  # the catch-up scan at start

    new = lib / "new" / "mirrored cat.jpg"
    new.parent.mkdir()
    ImageOps.mirror(Image.open(lib / "chelsea_cat.png").convert("RGB")).save(new)
    wait_for(lambda: str(new) in indexed_paths(store))

    moved = lib / "new" / "coffee.png"
    (lib / "espresso_cup.png").rename(moved)
    wait_for(lambda: str(moved) in indexed_paths(store)
             and str(lib / "espresso_cup.png") not in indexed_paths(store))

    shutil.rmtree(lib / "new")
    wait_for(lambda: not any("/new/" in p for p in indexed_paths(store)))
    assert len(indexed_paths(store)) == 11


def test_watcher_skips_ignored_folders(watching):
    store, lib = watching
    hidden = lib / ".thumbnails"
    hidden.mkdir()
    shutil.copy2(lib / "chelsea_cat.png", hidden / "thumb.png")
    visible = lib / "visible.png"
    ImageOps.flip(Image.open(lib / "chelsea_cat.png")).save(visible)
    wait_for(lambda: str(visible) in indexed_paths(store))
    assert not any(".thumbnails" in p for p in indexed_paths(store))


def test_pixseek_watch_stops_cleanly_on_sigterm(tmp_path, library):
    data = tmp_path / "data"
    env = {**os.environ, "PIXSEEK_INDEXER_DECODE_WORKERS": "0"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pixseek", "--data-dir", str(data), "--model", "offline",
         "watch", str(library)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        db = data / "pixseek.db"
        wait_for(lambda: db.exists() and len(indexed_paths_at(db)) == 12, timeout=120)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "stopped" in err and "Traceback" not in err


def indexed_paths_at(db: Path) -> set[str]:
    store = Store(f"sqlite:///{db}", upgrade=False)
    try:
        return indexed_paths(store)
    except Exception:  # noqa: BLE001 - the schema may not exist yet
        return set()
    finally:
        store.close()


def test_periodic_rescan_finds_what_the_os_did_not_report(
    make_config, offline, library, monkeypatch
):
    """A network share sends no events: only the rescan every watch.rescan_minutes sees
    a new photo there (here every 0.6 s, with events switched off)."""
    import indexer.watch as watch

    monkeypatch.setattr(watch._Marker, "on_any_event", lambda self, event: None)
    config = make_config(watch__settle_seconds=0.1, watch__rescan_minutes=0.01)
    store = Store(config.db_url)
    runs: list[list[str]] = []
    watcher = Watcher(Indexer(config, store, offline, progress=False), [library],
                      on_run=lambda folders, summary: runs.append(folders))
    thread = threading.Thread(target=watcher.run, daemon=True)
    thread.start()
    try:
        assert watcher.ready.wait(120)
        new = library / "unreported.png"
        ImageOps.flip(Image.open(library / "chelsea_cat.png")).save(new)
        wait_for(lambda: str(new) in indexed_paths(store))
        assert all(folders == [str(library.resolve())] for folders in runs)  # full rescans
    finally:
        watcher.stop()
        thread.join(60)
        store.close()
    assert not thread.is_alive()
