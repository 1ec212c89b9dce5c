"""PostgreSQL as the store: a real server (tests/postgres.py), the real CLI, and several
writers at once, the way a team on several hosts shares one database."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps
from sqlalchemy import func, select

from search.config import load_config
from search.migrate import current_revision
from search.store import Embedding, Store
from search.vectors import index_for
from tests import cli

pytestmark = pytest.mark.slow  # starts PostgreSQL and pixseek processes

OFFLINE = "offline"


def pixseek(data: Path, url: str, *args: str, check: bool = True):
    return cli.pixseek(data, *args, env={"PIXSEEK_DATABASE_URL": url}, check=check,
                       model=OFFLINE)


def variants(library: Path, dest: Path, make, suffix: str) -> list[Path]:
    """A copy of every library photo through ``make`` (a new content each)."""
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for photo in sorted(library.iterdir()):
        with Image.open(photo) as im:
            target = dest / f"{photo.stem}-{suffix}.png"
            make(im.convert("RGB")).save(target)
            out.append(target)
    return out


def test_the_schema_is_made_and_upgraded_on_postgresql(pg_url, tmp_path):
    store = Store(pg_url)
    head = current_revision(store.engine)
    assert head is not None
    store.close()
    assert f"revision {head}" in pixseek(tmp_path / "d", pg_url, "db", "upgrade").stdout


def test_index_search_and_filters_through_the_cli(pg_url, tmp_path, library):
    data = tmp_path / "data"
    # Two sibling folders whose names differ in case only: under the database's locale
    # (an ICU collation where cluster supports it) "Trips" sorts between "trips/" and
    # "trips0", so only byte order keeps the folder filter exact.
    lower, upper = tmp_path / "lib" / "trips", tmp_path / "lib" / "Trips"
    lower.mkdir(parents=True)
    upper.mkdir()
    photos = sorted(library.iterdir())
    for p in photos[:6]:
        (lower / p.name).write_bytes(p.read_bytes())
    for p in photos[6:]:
        (upper / p.name).write_bytes(p.read_bytes())
    summary = json.loads(pixseek(data, pg_url, "index", str(tmp_path / "lib"), "--json").stdout)
    assert (summary["encoded"], summary["failed"]) == (12, 0)
    hits = json.loads(pixseek(data, pg_url, "search", "a cat", "-k", "3", "--json").stdout)
    assert Path(hits[0]["path"]).name == "chelsea_cat.png"
    filtered = json.loads(pixseek(data, pg_url, "search", "a photo", "-k", "20",
                                  "--folder", str(lower), "--json").stdout)
    assert sorted(Path(r["path"]).parent for r in filtered) == [lower] * 6
    status = json.loads(pixseek(data, pg_url, "status", "--json").stdout)
    assert status["indexed"] == 12 and status["index_current"]


def test_an_unreachable_server_is_one_line(tmp_path):
    url = f"postgresql://nobody@/pixseek?host={tmp_path / 'no-server'}"
    proc = pixseek(tmp_path / "d", url, "status", check=False)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr
    assert "cannot open the database" in lines[0] and "server is running" in lines[0]


def test_an_id_allocated_first_commits_first(pg_url):
    """The vector index follows "the highest embedding id it holds". Here a writer that
    took ids and has not committed holds back a second writer, so a reader can never see
    the second one's larger id while the first one's smaller id is still to come."""
    store = Store(pg_url)
    with store.session() as s:
        ids = store.insert_contents(s, [
            {"hash": f"{i:032x}", "size": 1, "width": 1, "height": 1} for i in range(2)])
    vec = np.ones((1, 4), np.float32) / 2
    first_holds, second_done = threading.Event(), threading.Event()

    def first() -> None:
        with store.session() as s:
            store.insert_embeddings(s, "m", ids[:1], vec)
            first_holds.set()
            time.sleep(1.5)  # committing late

    def second() -> None:
        first_holds.wait(10)
        with store.session() as s:
            store.insert_embeddings(s, "m", ids[1:], vec)
        second_done.set()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    assert first_holds.wait(10)
    time.sleep(0.5)
    assert not second_done.is_set()  # waits for the first writer's commit
    assert store.change_marks("m")[0] == 0  # nothing half-visible
    for t in threads:
        t.join(20)
    assert second_done.is_set()
    with store.session() as s:
        rows = s.execute(select(Embedding.id, Embedding.content_id).order_by(Embedding.id)).all()
    assert [cid for _, cid in rows] == ids  # ids in commit order
    store.close()


def test_two_indexers_and_a_watcher_at_once_lose_and_double_nothing(
    pg_url, tmp_path, library
):
    """Three writers on three "hosts" (data dirs) share one PostgreSQL database while a
    server (a fourth data dir) follows the store with its vector index."""
    a, b, w = tmp_path / "a", tmp_path / "b", tmp_path / "w"
    variants(library, a, ImageOps.mirror, "mirror")
    variants(library, a, lambda im: im, "same")  # the same contents as in b: a race on them
    variants(library, b, ImageOps.flip, "flip")
    variants(library, b, lambda im: im, "same")
    w.mkdir()

    config = load_config(overrides={"data_dir": str(tmp_path / "server"),
                                    "database_url": pg_url}, environ={})
    store = Store(pg_url)
    reader = None  # opened once the first vector tells the model's id

    env = {**os.environ, "PIXSEEK_DATABASE_URL": pg_url, "PIXSEEK_INDEXER_DECODE_WORKERS": "0",
           "PIXSEEK_MODEL_BATCH_SIZE": "2", "PIXSEEK_WATCH_SETTLE_SECONDS": "0.3"}

    def start(data: str, *args: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "pixseek", "--data-dir", str(tmp_path / data),
             "--model", OFFLINE, *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)

    watcher = start("host-w", "watch", str(w))
    indexers = [start("host-a", "index", str(a), "--json"),
                start("host-b", "index", str(b), "--json")]
    try:
        # The watcher's photos arrive while both indexers run.
        dropped = variants(library, tmp_path / "w-src", ImageOps.grayscale, "grey")
        model_id: str | None = None
        refreshes, deadline = 0, time.monotonic() + 240
        while any(p.poll() is None for p in indexers) and time.monotonic() < deadline:
            if dropped and watcher.poll() is None:
                src = dropped.pop()
                os.replace(src, w / src.name)
            if model_id is None:
                with store.session() as s:
                    model_id = s.scalar(select(Embedding.model).limit(1))
                if model_id is not None:
                    reader = index_for(store, model_id, config, verify=False).open()
            else:
                reader.refresh()
                refreshes += 1
            time.sleep(0.05)
        for proc in indexers:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
        for src in dropped:
            os.replace(src, w / src.name)

        def store_ids() -> np.ndarray:
            with store.session() as s:
                return np.sort(np.fromiter(s.scalars(
                    select(Embedding.content_id).where(Embedding.model == model_id)), np.int64))

        # 12 shared + 12 mirrored + 12 flipped + 12 grey contents, each with one vector.
        wait = time.monotonic() + 120
        while len(store_ids()) < 48 and time.monotonic() < wait:
            time.sleep(0.2)
    finally:
        watcher.send_signal(signal.SIGTERM)
        watcher.communicate(timeout=60)
        for proc in indexers:
            proc.kill()
    ids = store_ids()
    assert len(ids) == 48 and len(np.unique(ids)) == 48
    with store.session() as s:
        assert s.scalar(select(func.count()).select_from(Embedding)) == 48
    assert reader is not None and refreshes > 0
    reader.refresh()
    assert not reader.rebuilt  # followed the store by its marks, never rebuilt
    assert reader.count == 48
    scores, found = reader.search(np.eye(1, reader.dim, dtype=np.float32), 100, exact=True)
    assert np.array_equal(np.sort(found[0][found[0] >= 0]), ids)
    store.close()
