"""The sample library the tests index."""

from __future__ import annotations

import shutil
from pathlib import Path


def copy_library(folder: Path, samples) -> Path:
    """The 12 sample photos that Python packages ship, copied into ``folder`` (made) with
    their modification times. (Not the opencv-doc ones, so the tests see the same library
    on every machine.)"""
    folder.mkdir()
    for photo in samples:
        if not str(photo.path).startswith("/usr/share"):
            shutil.copy2(photo.path, folder / f"{photo.name}{photo.path.suffix}")
    return folder
