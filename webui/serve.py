"""Serve the web UI with werkzeug's threaded server (no extra server dependency).

``run`` enforces architecture invariant 6: it binds to 127.0.0.1 by default and refuses any other
address unless an access token is given.
"""

from __future__ import annotations

import re
import secrets
import socket
import sys
from urllib.parse import quote

from werkzeug.serving import (
    BaseWSGIServer,
    WSGIRequestHandler,
    get_sockaddr,
    make_server,
    select_address_family,
)

from search.config import Config
from search.engine import Engine
from search.errors import PixseekError
from webui import create_app
from webui.auth import QUERY_PARAM, is_loopback

_TOKEN_IN_URL = re.compile(rf"([?&]{QUERY_PARAM}=)[^&\s]*")


def generate_token() -> str:
    """A random access token for ``serve --token`` when a person wants one made for them."""
    return secrets.token_urlsafe(24)


class _RedactingHandler(WSGIRequestHandler):
    """The request log must not record the access token of a ``?token=`` link."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        if hasattr(self, "path"):
            self.path = _TOKEN_IN_URL.sub(r"\1***", self.path)
        super().log_request(code, size)


def check_bind(host: str, token: str | None) -> None:
    if not token and not is_loopback(host):
        raise PixseekError(
            f"refusing to serve on {host} without an access token: anyone who can reach it "
            "could browse your photos. Give a token (--token), or bind to 127.0.0.1."
        )


def build_server(
    config: Config,
    host: str = "127.0.0.1",
    port: int = 8000,
    token: str | None = None,
    engine: Engine | None = None,
) -> BaseWSGIServer:
    """The app behind a threaded werkzeug server, bound and ready for ``serve_forever``."""
    token = (token or "").strip() or None
    check_bind(host, token)
    app = create_app(config, engine, token)
    # Bind here rather than in werkzeug, whose bind failure prints and calls sys.exit.
    family = select_address_family(host, port)
    try:
        sock = socket.create_server(get_sockaddr(host, port, family), family=family)
    except OSError as exc:
        raise PixseekError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}. "
            "Is another server using the port? Try --port."
        ) from None
    try:
        return make_server(
            host, port, app, threaded=True, request_handler=_RedactingHandler,
            fd=sock.fileno(),
        )
    finally:
        sock.close()  # werkzeug holds its own duplicate of the socket


def url_for_server(server: BaseWSGIServer, token: str | None = None) -> str:
    host = server.host
    if host in ("0.0.0.0", "::", ""):
        host = socket.gethostname()
    if ":" in host:
        host = f"[{host}]"
    url = f"http://{host}:{server.port}/"
    return f"{url}?{QUERY_PARAM}={quote(token)}" if token else url


def run(
    config: Config, host: str = "127.0.0.1", port: int = 8000, token: str | None = None
) -> None:
    """Serve until Ctrl+C. Raises PixseekError (one clear line) for a refused or failed bind."""
    token = (token or "").strip() or None
    check_bind(host, token)  # before opening anything
    engine = Engine(config)
    try:
        server = build_server(config, host, port, token, engine)
        print(f"pixseek: serving {url_for_server(server, token)} (Ctrl+C to stop)",
              file=sys.stderr)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
    finally:
        engine.close()
