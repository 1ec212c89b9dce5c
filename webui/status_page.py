"""``/status``: what the engine has indexed, its vector index, and which files failed and why.

The page a person reads; ``/api/status`` keeps the same facts as JSON for scripts. Reading it
loads no model: counts come from the store and the index state from its manifest.
"""

from __future__ import annotations

from flask import Blueprint, render_template

from webui import service

bp = Blueprint("status_page", __name__)


def index_summary(index: dict, current: bool) -> str:
    """One line, as ``pixseek status`` prints it: kind, size, search depth, freshness."""
    shape = f"{index['kind']} ({index['requested']})"
    if index.get("snapshot_vectors"):
        shape += f", {index['snapshot_vectors']} vectors in {index['bytes'] / 2**20:.1f} MiB"
    for depth in ("nprobe", "efSearch"):
        if depth in index:
            shape += f", {depth} {index[depth]} (recall@10 {index['tuned_recall']} when tuned)"
    return f"{shape}; {'current' if current else 'rebuilt on next open'}"


@bp.get("/status")
def status() -> str:
    info = service.engine().status()
    return render_template(
        "status.html", info=info, index_state=index_summary(info["index"], info["index_current"])
    )
