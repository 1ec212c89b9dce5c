"""The one way the app answers a failure: JSON for the API (never an HTML page or a
traceback), the search page with the message otherwise."""

from __future__ import annotations

from flask import Response, jsonify, make_response, render_template, request


def error_response(status: int, message: str) -> Response:
    if request.path.startswith("/api/"):
        resp = jsonify(error=message)
    else:
        resp = make_response(render_template(
            "index.html", query=request.args.get("q", ""), error=message, status=status,
            indexed=None,
        ))
    resp.status_code = status
    return resp
