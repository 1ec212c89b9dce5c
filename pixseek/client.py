"""The command as a client of a running ``pixseek serve`` for the same library and model:
a search costs a request instead of importing torch and loading the model.

Imports only the standard library and ``search.server_file``, so that this path stays
fast. Each function returns None when there is no such server, or when the request holds
something it cannot send faithfully (then the command runs in process, as with
``--local``, and reports any problem in its own words).
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from search import server_file
from search.errors import InputError, PixseekError

CONNECT_SECONDS = 2.0
ANSWER_SECONDS = 600.0  # the server's first search may load the model
# search.query's "[WEIGHT:]" prefix and its bound
_WEIGHT = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*:\s*(.*)$", re.DOTALL)
MAX_WEIGHT = 100.0


class _Local(Exception):
    """Run in process instead."""


def call(config, command: str, args: dict) -> object | None:
    """POST ``args`` to the server's ``/api/cli/<command>``; its JSON answer, or None."""
    info = server_file.read(config.data_path)
    if info is None:
        return None
    model = None
    if config.model_chosen:
        model = config.model.name
        local = Path(model).expanduser()
        if local.is_dir():  # the server resolves names from its own working directory
            model = str(local.resolve())
    body = {"database": server_file.database_key(config.db_url), "model": model, "args": args}
    url = urlsplit(info.get("url") or "")
    headers = {"Content-Type": "application/json"}
    if info.get("token"):
        headers["Authorization"] = f"Bearer {info['token']}"
    try:
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=CONNECT_SECONDS)
        try:
            conn.connect()
            conn.sock.settimeout(ANSWER_SECONDS)
            conn.request("POST", f"/api/cli/{command}", json.dumps(body), headers)
            response = conn.getresponse()
            status, data = response.status, response.read()
        finally:
            conn.close()
        answer = json.loads(data)
    except (OSError, ValueError, http.client.HTTPException):
        return None  # gone, or not a pixseek server
    if status == 200:
        logging.getLogger("pixseek").info("answered by the pixseek serve at %s", info["url"])
        return answer
    message = answer.get("error") if isinstance(answer, dict) else None
    if status == 400 and message:
        raise InputError(message)
    if status == 503 and message:  # the model would not load here either
        raise PixseekError(message)
    return None  # another library or model (409), an older server, an internal error


def _weighted(raw: str) -> tuple[float, str]:
    if Path(raw).expanduser().exists():
        return 1.0, raw
    match = _WEIGHT.match(raw)
    if not match:
        return 1.0, raw
    weight = float(match.group(1))
    if not 0 < weight <= MAX_WEIGHT:
        raise _Local
    return weight, match.group(2)


def _image(raw: str) -> list:
    weight, path = _weighted(raw)
    try:
        data = Path(path).expanduser().read_bytes()
    except (OSError, ValueError, RuntimeError):
        raise _Local from None
    return [weight, base64.b64encode(data).decode()]


def _similar(raw: str) -> str:
    """An id as it is; the path of a file, absolute (the server has its own cwd)."""
    if raw.strip().isascii() and raw.strip().isdigit():
        return raw
    if Path(raw).expanduser().exists():
        return str(Path(raw).expanduser().resolve())
    weight, target = _weighted(raw)
    target = target.strip()
    if target.isascii() and target.isdigit():
        return raw
    if target and Path(target).expanduser().exists():
        return f"{weight:g}:{Path(target).expanduser().resolve()}"
    raise _Local


def _folder(raw: str) -> str:
    if not raw.strip():
        return raw
    if "\x00" in raw:
        raise _Local
    try:
        return str(Path(raw).expanduser().resolve())
    except (OSError, ValueError, RuntimeError):
        raise _Local from None


@dataclass
class RemoteResult:
    score: float
    path: str
    strong: bool
    duplicates: list
    _dict: dict

    def as_dict(self) -> dict:
        return self._dict

    @property
    def date(self):
        """When the photo was taken, as the in-process result has it (for date sorts)."""
        from datetime import datetime

        raw = self._dict.get("date")
        return datetime.fromisoformat(raw) if raw else None


@dataclass
class RemotePage:
    results: list[RemoteResult]
    offset: int
    next_offset: int | None
    empty: bool  # no photos are indexed for the model
    understood: dict | None = None  # what the server read from the query, when anything

    @property
    def strong(self) -> int:
        return sum(r.strong for r in self.results)


def search(config, query: str | None, *, images, similar, folders, **fields) -> RemotePage | None:
    """The server's page for the command's search options, or None (run in process)."""
    try:
        args = {
            "query": query,
            "images": [_image(i) for i in images],
            "similar": [_similar(s) for s in similar],
            "folders": [_folder(f) for f in folders],
            **{key: (list(v) if isinstance(v, tuple) else v) for key, v in fields.items()},
        }
    except _Local:
        return None
    try:
        answer = call(config, "search", args)
    except InputError:
        if args["images"]:  # the server names an upload; in process names the file
            return None
        raise
    if not isinstance(answer, dict):
        return None
    results = [
        RemoteResult(item["score"], item["result"]["path"], item["result"]["strong"],
                     item["result"]["duplicates"], item["result"])
        for item in answer["results"]
    ]
    return RemotePage(results, answer["offset"], answer["next_offset"], answer["empty"],
                      answer.get("understood"))


def classify(config, image: str, labels: list[str], templates: str | None,
             temperature: float | None = None):
    """[(label, probability)] best first, or None (run in process)."""
    if templates not in (None, "imagenet"):  # a templates file: read and checked in process
        return None
    try:
        data = Path(image).expanduser().read_bytes()
    except (OSError, ValueError, RuntimeError):
        return None
    try:
        answer = call(config, "classify", {
            "image": base64.b64encode(data).decode(), "labels": labels, "templates": templates,
            "temperature": temperature})
    except InputError:
        return None  # the server names an upload; in process names the file
    return [(label, p) for label, p in answer] if isinstance(answer, list) else None


def status(config) -> dict | None:
    answer = call(config, "status", {})
    return answer if isinstance(answer, dict) else None
