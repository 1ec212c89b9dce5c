"""Counts in words as people write them: "1 file", "2 files", "0 photos"."""

from __future__ import annotations


def plural(n: int, noun: str, many: str | None = None) -> str:
    """``n`` and ``noun``, in the plural (``many``, else noun + "s") unless n is 1."""
    return f"{n} {noun if n == 1 else many or noun + 's'}"
