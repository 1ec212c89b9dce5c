"""A later indexing stage: where each photo was taken (EXIF GPS, named offline).

It drains the store's queue of indexed contents whose place was not read with the current
geocoder data (``contents_needing_place``), so new photos get theirs after the CLIP pass,
and a library indexed before places existed is backfilled on its next run without any
re-encoding. Reading a place costs the EXIF header only (about a millisecond a photo).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from search import places
from search.store import Store

QUEUE_CHUNK = 512


@dataclass
class PlaceSummary:
    read: int = 0
    located: int = 0  # photos with a usable GPS position


def place_row(cid: int, path: str, source: str) -> dict:
    row = {"content_id": cid, "source": source}
    position = places.read_position(path)
    if position is not None:
        names = places.name(position)
        row.update(latitude=position.latitude, longitude=position.longitude,
                   altitude=position.altitude, **names, place_key=places.place_key(names))
    return row


def read_places(store: Store, cancel: threading.Event) -> PlaceSummary:
    summary = PlaceSummary()
    source = places.source()
    after = store.newest_place_read(source)  # every content below was read in id order
    while not cancel.is_set():
        queue = store.contents_needing_place(source, after, QUEUE_CHUNK)
        if not queue:
            break
        rows = [place_row(cid, path, source) for cid, path in queue]
        store.save_places(rows)
        summary.read += len(rows)
        summary.located += sum(r.get("latitude") is not None for r in rows)
        after = queue[-1][0]
    return summary
