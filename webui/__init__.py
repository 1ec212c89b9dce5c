"""The web UI: a thin Flask layer over ``search.engine.Engine``.

``create_app`` is a Flask-tutorial app factory. Pages live in ``views``, the JSON API in
``api``, indexed photos and thumbnails (by id only, architecture invariant 6) in ``photos``,
the status page in ``status_page``.
``webui.serve.run`` is the way to serve it; it refuses a non-loopback bind without a token.
"""

from __future__ import annotations

import logging
from pathlib import Path

from flask import Flask, Response, request
from flask_compress import Compress
from werkzeug.exceptions import HTTPException

from search.config import Config
from search.engine import Engine
from search.errors import InputError, ModelLoadError, PixseekError
from webui import auth, service
from webui.errors import error_response

MAX_UPLOAD_MB = 20
log = logging.getLogger(__name__)

# Only this origin's own files; no inline script or style, no framing, no plugins.
CSP = (
    "default-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
# A photo opened on its own: no script at all; the browser's image viewer styles itself inline.
MEDIA_CSP = "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; frame-ancestors 'none'"
# gzip for text only: photos and thumbnails are compressed already. gzip alone because
# browsers offer br and zstd only over HTTPS, and one algorithm keeps behaviour plain.
COMPRESSION = {
    "COMPRESS_MIMETYPES": [
        "text/html", "application/json", "text/css", "text/javascript", "application/javascript",
    ],
    "COMPRESS_ALGORITHM": ["gzip"],
    "COMPRESS_ALGORITHM_STREAMING": ["gzip"],  # static files are sent as streams
    "COMPRESS_MIN_SIZE": 500,  # below this the gzip header and a round of CPU cost more
    "COMPRESS_REGISTER": False,  # hooked in below, to leave byte ranges alone
}


def create_app(config: Config, engine: Engine | None = None, token: str | None = None) -> Flask:
    app = Flask(__name__)
    app.config.from_mapping(MAX_CONTENT_LENGTH=MAX_UPLOAD_MB * 1024 * 1024)  # uploads: 413
    app.json.sort_keys = False  # keep "query" before "results"
    app.config.from_mapping(COMPRESSION)
    # One Engine per app; its model loads on the first query, not here.
    service.install(app, engine or Engine(config))
    auth.install(app, token)

    from webui import api, duplicates, local_cli, photos, status_page, tags, views

    app.register_blueprint(views.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(photos.bp)
    app.register_blueprint(status_page.bp)
    app.register_blueprint(duplicates.bp)
    app.register_blueprint(local_cli.bp)
    app.register_blueprint(tags.bp)
    app.add_template_filter(lambda p: Path(p).name, "basename")

    @app.after_request
    def _security_headers(resp: Response) -> Response:
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        media = resp.mimetype.startswith("image/")
        resp.headers.setdefault("Content-Security-Policy", MEDIA_CSP if media else CSP)
        resp.headers.setdefault("Referrer-Policy", "no-referrer")  # never leak ?token=
        resp.headers.setdefault("X-Frame-Options", "DENY")
        return resp

    compress = Compress(app)

    @app.after_request
    def _compress(resp: Response) -> Response:
        # A 206 is a byte range of the file as stored: gzipping it would corrupt the file.
        return resp if resp.status_code == 206 else compress.after_request(resp)

    _install_error_handlers(app)
    return app


def _install_error_handlers(app: Flask) -> None:
    @app.errorhandler(InputError)
    def _input(exc: InputError):
        return error_response(400, str(exc))

    @app.errorhandler(ModelLoadError)
    def _model(exc: ModelLoadError):
        return error_response(503, str(exc))

    @app.errorhandler(PixseekError)
    def _pixseek(exc: PixseekError):
        log.error("%s", exc)
        return error_response(500, str(exc))

    @app.errorhandler(413)
    def _too_large(_exc: HTTPException):
        return error_response(413, f"the upload is too large: the limit is {MAX_UPLOAD_MB} MB")

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        return error_response(exc.code or 500, exc.description or exc.name)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unexpected error on %s %s", request.method, request.path)
        return error_response(500, "internal error; the server log has the details")
