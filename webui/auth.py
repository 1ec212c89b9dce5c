"""Access control (architecture invariant 6): loopback by default, an access token otherwise.

Without a token the app serves only requests addressed to a loopback name: a web page
elsewhere cannot rebind its own host name to 127.0.0.1 and read the library (DNS rebinding).
With a token every request must carry it: ``Authorization: Bearer <token>``, or
``?token=<token>`` once, which sets an HttpOnly, SameSite=Strict cookie so the page's own
requests (thumbnails, the script, the next search) carry it. The cookie holds an HMAC of the
token, not the token, and is never readable by scripts.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress

from flask import Flask, Response, g, request

COOKIE = "pixseek_token"
QUERY_PARAM = "token"


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and localhost; anything else may be reachable from the network."""
    host = host.strip().strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # another host name: it may resolve anywhere


def _host_name(host_header: str) -> str:
    """``name:port`` or ``[v6]:port`` from a Host header, without the port."""
    if host_header.startswith("["):
        return host_header[1:].partition("]")[0]
    return host_header.rpartition(":")[0] if host_header.count(":") == 1 else host_header


def _same(given: str, expected: bytes) -> bool:
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), expected)


def _refuse(status: int, message: str) -> Response:
    from webui.errors import error_response

    resp = error_response(status, message)
    if status == 401:
        resp.headers["WWW-Authenticate"] = 'Bearer realm="pixseek"'
    return resp


def install(app: Flask, token: str | None) -> None:
    if not token:
        @app.before_request
        def _loopback_only() -> Response | None:
            if not is_loopback(_host_name(request.host)):
                return _refuse(
                    400,
                    "This pixseek server answers only to localhost. To serve other host "
                    "names, start it with an access token (pixseek serve --token).",
                )
            return None

        return

    secret = token.encode("utf-8")
    # What the cookie holds: derived from the token, so a leaked cookie does not leak it.
    cookie_value = hmac.new(secret, b"pixseek web ui cookie", hashlib.sha256).hexdigest()

    @app.before_request
    def _require_token() -> Response | None:
        auth = request.headers.get("Authorization", "")
        if auth[:7].lower() == "bearer " and _same(auth[7:].strip(), secret):
            return None
        given = request.args.get(QUERY_PARAM)
        if given is not None and _same(given, secret):
            g.pixseek_set_cookie = True
            return None
        cookie = request.cookies.get(COOKIE)
        if cookie is not None and _same(cookie, cookie_value.encode()):
            return None
        return _refuse(
            401,
            "This pixseek server needs its access token: open the link that "
            "`pixseek serve` printed (it ends in ?token=...), or send "
            "'Authorization: Bearer TOKEN'.",
        )

    @app.after_request
    def _set_cookie(resp: Response) -> Response:
        if g.get("pixseek_set_cookie"):
            resp.set_cookie(
                COOKIE, cookie_value, httponly=True, samesite="Strict",
                secure=request.is_secure, path="/",
            )
        return resp
