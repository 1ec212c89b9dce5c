"""Faults a home server meets: idle and slow clients, floods of repeated fields, and
``systemctl stop``. Every socket is on 127.0.0.1, and every wait is bounded."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from contextlib import ExitStack
from pathlib import Path

import pytest

from search.errors import ConfigError
from search.query import MAX_REPEATED

TOKEN = "idle-test-token"
IDLE = 150  # past waitress's default connection_limit of 100


def _serve(server) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return thread


def _get(url: str, timeout: float) -> tuple[int, dict]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=timeout) as r:
        return r.status, json.load(r)


@pytest.mark.slow
def test_idle_connections_do_not_lock_out_a_search(indexed, offline):
    """150 connections that say nothing, stop mid request line, or were refused for want of
    the token and stay open: a search still answers within 2 s."""
    from search.engine import Engine
    from webui.serve import build_server

    engine = Engine(indexed, encoder=offline)
    server = build_server(indexed, port=0, token=TOKEN, engine=engine)
    _serve(server)
    base = f"http://127.0.0.1:{server.port}"
    with ExitStack() as stack:
        stack.callback(engine.close)
        stack.callback(server.server_close)
        stack.callback(server.shutdown)
        assert _get(f"{base}/api/search?q=a+cat&k=1", 60)[0] == 200  # the model is loaded
        idle = []
        for i in range(IDLE):
            sock = stack.enter_context(socket.create_connection(("127.0.0.1", server.port),
                                                                timeout=10))
            if i % 3 == 1:
                sock.sendall(b"GET /api/search?q=a")  # a request line that stops
            elif i % 3 == 2:  # unauthenticated, answered 401, and kept alive
                sock.sendall(b"GET /api/status HTTP/1.1\r\nHost: pixseek\r\n\r\n")
                assert sock.recv(64).startswith(b"HTTP/1.1 401")
            idle.append(sock)
        start = time.monotonic()
        status, body = _get(f"{base}/api/search?q=a+cat&k=1", 2)
        assert status == 200 and body["results"][0]["path"].endswith("chelsea_cat.png")
        assert time.monotonic() - start < 2
        assert len(server._server.active_channels) >= IDLE  # all still open: none was refused


@pytest.mark.slow
def test_an_idle_connection_is_closed_after_channel_timeout(make_config):
    from webui.serve import build_server

    server = build_server(make_config(serve__channel_timeout=2), port=0)
    _serve(server)
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            start = time.monotonic()
            assert sock.recv(1) == b""  # the server closed it
            # 2 s of quiet, found within a cleanup interval (a quarter of it, 1 s)
            assert 1.5 < time.monotonic() - start < 6
    finally:
        server.shutdown()
        server.server_close()


def test_waitress_gets_the_configured_limits(make_config):
    from webui.serve import build_server, waitress_settings

    config = make_config(serve__connection_limit=500, serve__channel_timeout=60)
    settings = waitress_settings(config.serve)
    assert settings["connection_limit"] == 500 and settings["channel_timeout"] == 60
    assert settings["cleanup_interval"] == 15
    assert settings["asyncore_use_poll"]  # select() stops at descriptor 1023
    server = build_server(config, port=0)
    try:
        adj = server._server.adj
        assert (adj.connection_limit, adj.channel_timeout, adj.cleanup_interval) == (500, 60, 15)
    finally:
        server.server_close()


@pytest.mark.parametrize(("key", "value"), [("connection_limit", 0), ("channel_timeout", 0),
                                            ("connection_limit", "many")])
def test_bad_limits_name_their_key(make_config, key, value):
    with pytest.raises(ConfigError, match=f"serve.{key}"):
        make_config(**{f"serve__{key}": value})


def test_the_open_file_limit_is_raised_to_fit():
    resource = pytest.importorskip("resource")
    from webui.serve import FDS_PER_CONNECTION, FDS_SPARE, fit_open_files

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = FDS_PER_CONNECTION * 1000 + FDS_SPARE
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(1024, soft), hard))  # systemd's
        fits = fit_open_files(1000)
        now = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        assert now >= (want if hard == resource.RLIM_INFINITY else min(want, hard))
        # Under a hard limit too low, fewer connections: never more than there are files.
        assert fits == 1000 if now >= want else fits * FDS_PER_CONNECTION + FDS_SPARE <= now
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# -- repeated fields ------------------------------------------------------------------------

def _many(field: str, n: int, value: str = "/tmp/x") -> str:
    return "&".join(f"{field}={value}" for _ in range(n))


@pytest.mark.parametrize(("keyword", "name"), [
    ("images", "image"), ("similar", "similar"), ("negatives", "not"), ("folders", "folder"),
    ("places", "place")])
def test_build_limits_every_repeated_field(keyword, name):
    """The one rule every door goes through (search.query.build)."""
    from search.errors import InputError
    from search.query import build

    with pytest.raises(InputError, match=f"^{name}: at most {MAX_REPEATED} values"):
        build("a cat", **{keyword: ["1"] * (MAX_REPEATED + 1)})


def test_a_thousand_folders_are_a_400_not_a_500(client):
    r = client.get(f"/api/search?q=a+cat&{_many('folder', 1000)}")
    assert r.status_code == 400
    assert r.get_json() == {"error": f"folder: at most {MAX_REPEATED} values per search, "
                                     "not 1000"}


@pytest.mark.parametrize("field", ["folder", "not", "similar"])
def test_every_repeated_field_has_the_limit(client, field):
    r = client.get(f"/api/search?q=a+cat&{_many(field, MAX_REPEATED + 1, '1')}")
    assert r.status_code == 400 and field in r.get_json()["error"]
    # The search page says the same, on the page.
    page = client.get(f"/?q=a+cat&{_many(field, MAX_REPEATED + 1, '1')}")
    assert page.status_code == 400 and b"at most 100 values" in page.data


def test_the_limit_itself_is_allowed(client, library):
    r = client.get(f"/api/search?q=a+cat&k=1&{_many('folder', MAX_REPEATED, str(library))}")
    assert r.status_code == 200
    assert r.get_json()["results"][0]["path"].endswith("chelsea_cat.png")


def test_an_upload_with_too_many_folders_is_a_400(client, samples):
    with open(samples[0].path, "rb") as f:
        data = {"image": (f, "x.png"), "folder": ["/tmp/x"] * (MAX_REPEATED + 1)}
        r = client.post("/api/search", data=data, content_type="multipart/form-data")
    assert r.status_code == 400 and "folder" in r.get_json()["error"]


def test_openapi_documents_the_limit(client):
    params = client.get("/api/openapi.json").get_json()["paths"]["/api/search"]["get"]
    limits = {p["name"]: p["schema"].get("maxItems") for p in params["parameters"]}
    assert limits["folder"] == limits["not"] == limits["similar"] == MAX_REPEATED


# -- systemctl stop -------------------------------------------------------------------------

@pytest.mark.slow
def test_serve_exits_0_on_sigterm(tmp_path: Path):
    """systemd stops a service with SIGTERM; a clean stop must not count as a failure."""
    with socket.socket() as probe:  # a free port (the server binds it a moment later)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIXSEEK_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pixseek", "--data-dir", str(tmp_path / "data"), "--model",
         "offline", "serve", "--port", str(port)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.communicate()[1]
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status", timeout=5)
                break
            except OSError:
                assert time.monotonic() < deadline, "serve did not answer in 120 s"
                time.sleep(0.25)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
        assert proc.returncode == 0, err
        assert "Traceback" not in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
