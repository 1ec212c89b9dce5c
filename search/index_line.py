"""A vector index's ``describe()`` dict in one line. Apart from ``search.vectors`` so that
``pixseek status`` answered by a server prints it without importing the index code."""

from __future__ import annotations


def describe_line(index: dict, current: bool) -> str:
    """A ``describe()`` dict in one line, as ``pixseek status`` and the status page show
    it: kind, size, tuned search depth, and whether it is current."""
    shape = f"{index['kind']} ({index['requested']})"
    if index.get("snapshot_vectors"):
        shape += f", {index['snapshot_vectors']} vectors in {index['bytes'] / 2**20:.1f} MiB"
    for depth in ("nprobe", "efSearch"):
        if depth in index:
            measured = ", ".join(f"{kind} {value}" for kind, value in index["recall"].items())
            shape += f", {depth} {index[depth]} (held-out recall@10: {measured or 'not measured'})"
    return f"{shape}; {'current' if current else 'rebuilt on next open'}"
