"""Access control (architecture invariant 6): loopback only without a token, the token otherwise."""

from __future__ import annotations

import json
import logging
import socket
import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from search.errors import PixseekError

TOKEN = "correct-horse-battery-staple"


@pytest.fixture
def guarded(indexed, make_app):
    return make_app(indexed, token=TOKEN).test_client()


def test_without_the_token_everything_is_401(guarded):
    for url in ("/", "/?q=a+cat", "/api/search?q=a+cat", "/api/status", "/status", "/image/1",
                "/thumb/1", "/thumb/1/00ff-320.jpg", "/static/app.js"):
        r = guarded.get(url)
        assert r.status_code == 401, url
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
    r = guarded.get("/api/status")
    assert r.mimetype == "application/json" and "access token" in r.get_json()["error"]


def test_bearer_header(guarded):
    ok = guarded.get("/api/status", headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200 and ok.get_json()["indexed"] == 12
    assert "Set-Cookie" not in ok.headers  # API clients get no cookie
    for wrong in (f"Bearer {TOKEN}x", "Bearer ", f"Basic {TOKEN}", TOKEN, "Bearer ünïcödé"):
        r = guarded.get("/api/status", headers={"Authorization": wrong})
        assert r.status_code == 401, wrong


def test_token_link_sets_a_strict_httponly_cookie(guarded):
    assert guarded.get("/?token=wrong").status_code == 401
    r = guarded.get(f"/?token={TOKEN}")
    assert r.status_code == 200
    cookie = r.headers["Set-Cookie"]
    assert cookie.startswith("pixseek_token=") and TOKEN not in cookie
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    # The page's own requests now carry the cookie, with no token in the URL.
    assert guarded.get("/api/status").status_code == 200
    results = guarded.get("/api/search?q=a+cat").get_json()["results"]
    assert guarded.get(results[0]["thumb_url"]).status_code == 200
    assert guarded.get("/?q=a+cat").status_code == 200


def test_forged_cookie_is_401(guarded):
    for value in (TOKEN, "0" * 64, ""):
        guarded.set_cookie("pixseek_token", value)
        assert guarded.get("/api/status").status_code == 401, value


def test_without_a_token_only_loopback_host_names_are_served(client):
    for host in ("localhost", "localhost:8000", "127.0.0.1:8000", "127.3.4.5", "[::1]:8000"):
        assert client.get("/api/status", headers={"Host": host}).status_code == 200, host
    # A page on another site that rebinds its own name to 127.0.0.1 (DNS rebinding).
    for host in ("evil.example", "evil.example:8000", "192.168.1.20:8000", "localhost.evil.io"):
        r = client.get("/api/status", headers={"Host": host})
        assert r.status_code == 400 and "only to localhost" in r.get_json()["error"], host


def test_with_a_token_any_host_name_is_served(guarded):
    r = guarded.get("/api/status", headers={"Host": "photos.lan:8000",
                                            "Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200


def test_security_headers(client):
    for url in ("/", "/api/status", "/status", "/api/search?q=", "/static/style.css"):
        r = client.get(url)
        assert r.headers["X-Content-Type-Options"] == "nosniff", url
        csp = r.headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp
        assert r.headers["Referrer-Policy"] == "no-referrer"
    # A photo opened on its own gets a policy with no script at all.
    cid = client.get("/api/search?q=a+cat").get_json()["results"][0]["id"]
    for url in (f"/image/{cid}", f"/thumb/{cid}"):
        r = client.get(url)
        csp = r.headers["Content-Security-Policy"]
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert "default-src 'none'" in csp and "script" not in csp and "'self'" in csp


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", "192.168.1.5", "example.com", "10.0.0.1"])
def test_run_refuses_a_public_bind_without_a_token(make_config, host):
    from webui.serve import run

    config = make_config()
    with pytest.raises(PixseekError, match="without an access token") as info:
        run(config, host=host, port=0)
    assert "\n" not in str(info.value) and "--token" in str(info.value)
    assert not config.data_path.exists()  # refused before opening anything
    with pytest.raises(PixseekError, match="without an access token"):
        run(config, host=host, port=0, token="   ")  # a blank token is no token


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.1.1", "localhost", "::1", "[::1]"])
def test_loopback_binds_need_no_token(host):
    from webui.auth import is_loopback
    from webui.serve import check_bind

    assert is_loopback(host)
    check_bind(host, None)


def _serve(server):
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return thread


@pytest.mark.slow
def test_real_server_with_token_and_no_token_in_the_log(indexed, offline, caplog):
    from search.engine import Engine
    from webui.serve import build_server, url_for_server

    engine = Engine(indexed, encoder=offline)
    server = build_server(indexed, host="0.0.0.0", port=0, token=TOKEN, engine=engine, threads=4)
    assert server.threads == 4
    _serve(server)
    try:
        base = f"http://127.0.0.1:{server.port}"
        assert url_for_server(server, TOKEN).endswith(f":{server.port}/?token={TOKEN}")
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(f"{base}/api/status", timeout=30)
        assert info.value.code == 401
        caplog.set_level(logging.DEBUG)  # every logger, the server's included
        with urllib.request.urlopen(f"{base}/api/search?q=a+cat&k=2&token={TOKEN}",
                                    timeout=60) as r:
            body = json.load(r)
            assert r.headers["Server"] == "pixseek"  # waitress, naming no software version
        assert body["results"][0]["path"].endswith("chelsea_cat.png")
        assert TOKEN not in caplog.text

        # Threaded server, one model: concurrent queries all answer, and answer alike.
        def ask(q: str) -> str:
            req = urllib.request.Request(f"{base}/api/search?q={q}&k=1",
                                         headers={"Authorization": f"Bearer {TOKEN}"})
            with urllib.request.urlopen(req, timeout=60) as r:
                return json.load(r)["results"][0]["path"].rsplit("/", 1)[-1]

        queries = ["a+cat", "a+cup+of+coffee"] * 4
        with ThreadPoolExecutor(8) as pool:
            names = list(pool.map(ask, queries))
        assert names == ["chelsea_cat.png", "espresso_cup.png"] * 4
    finally:
        server.shutdown()
        server.server_close()
        engine.close()


def test_server_threads_come_from_the_config(make_config):
    from search.engine import Engine
    from webui.serve import build_server

    config = make_config(serve__threads=3)
    engine = Engine(config)
    server = build_server(config, port=0, engine=engine)
    server.server_close()
    engine.close()
    assert server.threads == 3


@pytest.mark.parametrize(
    ("host", "url"),
    [("127.0.0.1", "http://127.0.0.1:8000/"), ("::1", "http://[::1]:8000/"),
     ("[::1]", "http://[::1]:8000/"), ("localhost", "http://localhost:8000/")],
)
def test_url_for_server(host, url):
    from types import SimpleNamespace

    from webui.serve import url_for_server

    assert url_for_server(SimpleNamespace(host=host, port=8000)) == url
    assert url_for_server(SimpleNamespace(host=host, port=8000), "a b") == url + "?token=a%20b"


@pytest.mark.slow
def test_shutdown_stops_serving(indexed):
    from webui.serve import build_server

    server = build_server(indexed, port=0)
    thread = _serve(server)
    with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/favicon.ico", timeout=30) as r:
        assert r.status == 200
    server.shutdown()
    thread.join(timeout=30)
    assert not thread.is_alive()
    server.server_close()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{server.port}/favicon.ico", timeout=5)


def test_busy_port_is_one_clear_error(indexed):
    from webui.serve import build_server

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(PixseekError, match=f"cannot listen on 127.0.0.1:{port}"):
            build_server(indexed, port=port)
