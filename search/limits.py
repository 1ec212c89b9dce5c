"""Bounds every door (CLI, web API, Python API) shares, so they refuse the same values with
the same words."""

from __future__ import annotations

from search.errors import InputError

# Results one search returns (per page). Deeper reading pages with offset.
MAX_K = 1000
# Content ids are SQLite integers: larger ones would be a database error, not "not found".
MAX_ID = 2**63 - 1


def check_k(raw: int | str | None) -> int | None:
    """``k`` as a checked int (None stays None: the configured default)."""
    if raw is None or (isinstance(raw, str) and raw.strip() == ""):
        return None
    try:
        k = int(raw)
    except (TypeError, ValueError):
        k = 0
    if isinstance(raw, bool) or not 1 <= k <= MAX_K:
        raise InputError(f"k must be a whole number from 1 to {MAX_K}, not {raw!r}")
    return k
