"""Serve the web UI with waitress: a production WSGI server, pure Python, threaded.

``run`` enforces architecture invariant 6: it binds to 127.0.0.1 by default and refuses any other
address unless an access token is given.

waitress logs no requests, so a ``?token=`` link's token never reaches a log. (werkzeug's
dev server logged every request line and needed the token redacted from it.)
"""

from __future__ import annotations

import logging
import secrets
import signal
import socket
import sys
import threading
from urllib.parse import quote

import waitress
from flask import Flask
from waitress import wasyncore
from werkzeug.serving import get_sockaddr, select_address_family

from search import server_file
from search.config import Config, ServeConfig
from search.engine import Engine
from search.errors import InputError, PixseekError
from webui import create_app, service
from webui.auth import QUERY_PARAM, is_loopback

log = logging.getLogger(__name__)
# File descriptors a connection may hold: its socket, and a request body and a response
# that waitress spills to temporary files past its in-memory thresholds.
FDS_PER_CONNECTION = 3
FDS_SPARE = 256  # the database, the index files, the model's files, thumbnails


def generate_token() -> str:
    """A random access token for ``serve --token`` when a person wants one made for them."""
    return secrets.token_urlsafe(24)


def check_bind(host: str, token: str | None) -> None:
    if not token and not is_loopback(host):
        raise InputError(
            f"refusing to serve on {host} without an access token: anyone who can reach it "
            "could browse your photos. Give a token (--token), or bind to 127.0.0.1."
        )


def fit_open_files(connections: int) -> int:
    """Raise the soft open-file limit so ``connections`` fit (systemd starts services at
    1024), and return how many connections fit under the hard limit. Past the limit
    accept() fails, and waitress would keep retrying it instead of serving."""
    try:
        import resource
    except ImportError:  # Windows: no such limit to raise
        return connections
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = FDS_PER_CONNECTION * connections + FDS_SPARE
    if soft == resource.RLIM_INFINITY or soft >= want:
        return connections
    new = want if hard == resource.RLIM_INFINITY else min(want, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    except (ValueError, OSError):  # macOS caps the soft limit below an infinite hard one
        new = soft
    fits = max(10, (new - FDS_SPARE) // FDS_PER_CONNECTION)
    if fits < connections:
        log.warning("serve.connection_limit %d lowered to %d: the open-file limit is %d "
                    "(raise it with ulimit -n or LimitNOFILE=)", connections, fits, new)
    return min(connections, fits)


def waitress_settings(serve: ServeConfig) -> dict[str, object]:
    """waitress's connection handling from ``serve``: enough connections that idle or slow
    clients do not lock everyone else out, closed soon once idle."""
    return {
        "threads": serve.threads,
        "connection_limit": fit_open_files(serve.connection_limit),
        "channel_timeout": serve.channel_timeout,
        # How often idle connections are looked for: a quarter of the timeout, so one
        # lives at most 1.25 x channel_timeout (waitress's default looks every 30 s).
        "cleanup_interval": max(1, serve.channel_timeout // 4),
        # poll(), not select(): select cannot watch a descriptor numbered past 1023.
        "asyncore_use_poll": True,
        # The Server header names no server software or version.
        "ident": "pixseek",
    }


class Server:
    """A bound waitress server with socketserver's verbs, so it can run in a thread and stop.

    waitress's own ``run`` loops until the process exits; ``serve_forever`` polls one round
    at a time instead so that ``shutdown`` (from another thread) can end it.
    """

    def __init__(self, app: Flask, sock: socket.socket, host: str,
                 serve: ServeConfig) -> None:
        self._server = waitress.create_server(app, sockets=[sock], **waitress_settings(serve))
        self.app = app
        self.host = host
        self.port: int = int(self._server.effective_port)
        self.threads = serve.threads
        self._stop = threading.Event()
        self._stopped = threading.Event()
        self._stopped.set()
        self._map = self._server._map  # waitress's socket map: the listener and connections

    def serve_forever(self) -> None:
        self._stop.clear()
        self._stopped.clear()
        try:
            adj = self._server.adj
            while not self._stop.is_set():
                wasyncore.loop(timeout=adj.asyncore_loop_timeout, use_poll=adj.asyncore_use_poll,
                               map=self._map, count=1)
        finally:
            self._stopped.set()

    def stop(self) -> None:
        """Ask ``serve_forever`` to return, without waiting (safe in a signal handler)."""
        self._stop.set()
        self._server.pull_trigger()  # wake the poll now, not at its timeout

    def shutdown(self) -> None:
        """Stop ``serve_forever`` and wait for it to return; connections stay open."""
        self.stop()
        self._stopped.wait()

    def server_close(self) -> None:
        """Close the socket and every connection, and stop the worker threads."""
        self._server.task_dispatcher.shutdown()
        wasyncore.close_all(self._map)


def build_server(
    config: Config,
    host: str = "127.0.0.1",
    port: int = 8000,
    token: str | None = None,
    engine: Engine | None = None,
    threads: int | None = None,
) -> Server:
    """The app behind waitress, bound and ready for ``serve_forever``.

    ``threads`` defaults to ``serve.threads`` in the configuration.
    """
    token = (token or "").strip() or None
    check_bind(host, token)
    app = create_app(config, engine, token)
    # Bind here, so a taken port is one clear message; waitress serves the bound socket.
    family = select_address_family(host, port)
    try:
        sock = socket.create_server(get_sockaddr(host, port, family), family=family)
    except OSError as exc:
        raise PixseekError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}. "
            "Is another server using the port? Try --port."
        ) from None
    serve = config.serve.model_copy(update={"threads": threads}) if threads else config.serve
    try:
        return Server(app, sock, host, serve)
    except BaseException:
        sock.close()
        raise


def url_for_server(server: Server, token: str | None = None, local: bool = False) -> str:
    """The server's address; ``local``: the one a process on this machine reaches it at
    (loopback for a server bound to every interface)."""
    host = server.host.strip("[]")
    if host in ("0.0.0.0", "::", ""):
        host = ("::1" if host == "::" else "127.0.0.1") if local else socket.gethostname()
    if ":" in host:
        host = f"[{host}]"
    url = f"http://{host}:{server.port}/"
    return f"{url}?{QUERY_PARAM}={quote(token)}" if token else url


def run(
    config: Config, host: str = "127.0.0.1", port: int = 8000, token: str | None = None
) -> None:
    """Serve until Ctrl+C or SIGTERM, then exit cleanly (status 0: systemd's ``stop`` is
    not a failure). Raises PixseekError (one clear line) for a refused or failed bind."""
    token = (token or "").strip() or None
    check_bind(host, token)  # before opening anything
    engine = Engine(config)
    try:
        server = build_server(config, host, port, token, engine)
        written = server_file.write(config.data_path, {
            "url": url_for_server(server, None, local=True), "token": token,
            "database": server_file.database_key(config.db_url), "model": engine.model_id})
        print(f"pixseek: serving {url_for_server(server, token)} with {server.threads} threads "
              "(Ctrl+C to stop)", file=sys.stderr)
        # Load the model while the first person is still typing, not after they press Enter.
        threading.Thread(target=service.warm_up, args=(server.app,), daemon=True,
                         name="pixseek-warm-up").start()
        # SIGTERM (systemctl stop) ends the loop like Ctrl+C, and run returns: exit 0. A
        # second one kills at once. (Only the main thread may set a handler.)
        def graceful(signum: int, _frame) -> None:
            signal.signal(signum, signal.SIG_DFL)
            server.stop()

        main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, graceful) if main else None
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            if main:
                signal.signal(signal.SIGTERM, previous)
            server_file.remove(written)
            server.server_close()
    finally:
        engine.close()
