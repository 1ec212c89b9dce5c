"""``/status``: what the engine has indexed, its vector index, and which files failed and why.

The page a person reads; ``/api/status`` keeps the same facts as JSON for scripts. Reading it
loads no model: counts come from the store and the index state from its manifest.
"""

from __future__ import annotations

from flask import Blueprint, render_template

from search.vectors import describe_line
from webui import service

bp = Blueprint("status_page", __name__)


@bp.get("/status")
def status() -> str:
    info = service.engine().status()
    return render_template(
        "status.html", info=info, index_state=describe_line(info["index"], info["index_current"])
    )
