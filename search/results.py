"""One search result: a content (a photo, under every path it has), its score and what it
matched; shared by the engine that ranks results and the near-duplicate folding that groups
them (``search.duplicates``)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from search.store import Photo


@dataclass
class Result:
    content_id: int
    path: str  # the first of ``paths`` in sort order
    score: float  # cosine similarity
    paths: list[str] = field(default_factory=list)
    width: int | None = None
    height: int | None = None
    taken_at: dt.datetime | None = None
    camera: str | None = None
    strong: bool = True  # above the model's relevance cut (search.relevance)
    date: dt.datetime | None = None  # taken_at, else the file's modification time
    hash: str = ""
    text: str | None = None  # a snippet of the text read from the photo (OCR)
    matched: list[str] = field(default_factory=list)  # "image" (CLIP), "text" (its words)
    duplicates: list[int] = field(default_factory=list)  # near-duplicates folded into it

    @classmethod
    def of(cls, cid: int, score: float, photo: Photo, strong: bool = True) -> Result:
        return cls(cid, photo.paths[0], score, photo.paths, photo.width, photo.height,
                   photo.taken_at, photo.camera, strong, photo.date, photo.hash)

    def as_dict(self) -> dict:
        return {
            "id": self.content_id,
            "path": self.path,
            "score": round(self.score, 6),
            "paths": self.paths,
            "width": self.width,
            "height": self.height,
            "taken_at": self.taken_at.isoformat() if self.taken_at else None,
            "camera": self.camera,
            "strong": self.strong,
            "date": self.date.isoformat() if self.date else None,
            "text": self.text,
            "matched": self.matched,
            "duplicates": self.duplicates,
        }
