"""The file a running ``pixseek serve`` leaves in its data dir, so that the ``pixseek``
command on the same machine can send it searches instead of loading the model itself.

It holds the server's address, process id and access token, and which database it serves
(a digest of the URL, which may hold a password); only its owner can read it. Light on
purpose: the command reads it before importing anything heavy.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

NAME = "serve.json"
log = logging.getLogger(__name__)


def database_key(db_url: str) -> str:
    return hashlib.sha256(db_url.encode()).hexdigest()


def write(data_dir: Path, info: dict) -> Path | None:
    """Write the file (mode 0600, written aside and renamed); None where the data dir
    cannot take it (a read-only library is still served, just not to the command)."""
    path = data_dir / NAME
    tmp = path.with_name(f".{NAME}.{os.getpid()}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump({**info, "pid": os.getpid()}, fh)
        os.replace(tmp, path)
    except OSError as exc:
        log.info("no server file in %s: %s", data_dir, exc)
        tmp.unlink(missing_ok=True)
        return None
    return path


def remove(path: Path | None) -> None:
    """Remove the file if it is still this process's (a newer server may have replaced it)."""
    if path is None:
        return
    try:
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass


def read(data_dir: Path) -> dict | None:
    """The file's contents when its server process is alive, else None."""
    try:
        info = json.loads((data_dir / NAME).read_text())
        pid = int(info["pid"])
        os.kill(pid, 0)  # signal 0: only whether the process exists
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return info
