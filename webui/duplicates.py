"""``/duplicates``: groups of near-duplicate photos side by side, the one to keep marked.

The groups are ``search.duplicates.find_groups`` over the engine's vector index (a k-NN
search per photo, so seconds for a hundred thousand photos), computed once per state of
the store (its change marks) and threshold, and kept until a photo is indexed or removed.
The page only shows: moving files is ``pixseek duplicates --move-to DIR``, which writes a
journal that ``--undo`` reads. Photos are shown by id (architecture invariant 6).
"""

from __future__ import annotations

from flask import Blueprint, current_app, render_template, request, url_for

from search import duplicates
from webui import service
from webui.urls import thumb_urls

bp = Blueprint("duplicates", __name__)
CACHE_KEY = "pixseek.duplicates"
PER_PAGE = 50
MAX_OFFSET = 10_000_000


def groups() -> tuple[list[duplicates.Group], float]:
    """The library's groups and the threshold they were made with, cached per store state.
    The service lock is held around each index call only, so searches go on meanwhile."""
    eng = service.engine()
    lock = current_app.extensions[service.LOCK_KEY]
    with lock:
        index = eng.vectors
        eng.refresh()
        marks = index.marks
    threshold = duplicates.threshold_for(eng.model_id)
    key = (eng.model_id, marks, threshold)
    cached = current_app.extensions.get(CACHE_KEY)
    if cached is not None and cached[0] == key:
        return cached[1], threshold
    found = duplicates.find_groups(eng.store, index, eng.model_id, threshold, lock=lock)
    current_app.extensions[CACHE_KEY] = (key, found)
    return found, threshold


def member_json(member: duplicates.Member, keep: bool) -> dict:
    out = member.as_dict(similarity=not keep)
    out.update(thumb_urls(member.id, member.hash))
    out["image_url"] = url_for("photos.image", cid=member.id)
    out["details_url"] = url_for("views.index", photo=member.id)
    out["keep"] = keep
    return out


@bp.get("/duplicates")
def page() -> str:
    offset = service._number(request.args.get("offset"), "offset", int, 0, MAX_OFFSET) or 0
    found, threshold = groups()
    shown = found[offset:offset + PER_PAGE]
    end = offset + len(shown)
    eng = service.engine()
    return render_template(
        "duplicates.html",
        groups=[[member_json(g.keep, True), *(member_json(m, False) for m in g.others)]
                for g in shown],
        total=len(found),
        others=sum(len(g.others) for g in found),
        offset=offset,
        next_offset=end if end < len(found) else None,
        threshold=threshold,
        calibrated=duplicates.calibrated(eng.model_id),
        model=eng.model_id,
    )
