"""Whether the model hub can be reached, asked once and briefly, so that a model missing
from the local cache on an offline machine fails in seconds, in one line, instead of after
half a minute of retries and repeated warnings."""

from __future__ import annotations

import logging
import os
import socket
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

PROBE_SECONDS = 3.0


def _endpoint() -> str:
    return os.environ.get("HF_ENDPOINT") or "https://huggingface.co"


def cached_path(repo: str, filename: str) -> Path | None:
    """The file of ``repo`` in the local Hugging Face cache (main revision), or None."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(repo, filename)
    except ValueError:  # not a valid repo id
        return None
    return Path(found) if isinstance(found, str) else None


def cached(repo: str) -> bool:
    """Whether the local Hugging Face cache holds the checkpoint's config (reads the cache
    folder only)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(repo, "config.json"), str)
    except ValueError:  # not a valid repo id: transformers says why
        return True


def unreachable_hub(timeout: float = PROBE_SECONDS) -> str | None:
    """None when a TCP connection to the hub opens within ``timeout``; else the hub's
    address (also when HF_HUB_OFFLINE asks not to try). Name resolution runs in a thread:
    it has no timeout of its own and can hang on a machine without DNS."""
    endpoint = _endpoint()
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return endpoint
    parts = urlsplit(endpoint)
    host = parts.hostname or ""
    port = parts.port or (80 if parts.scheme == "http" else 443)
    reached = threading.Event()

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            reached.set()
        except OSError:
            pass

    thread = threading.Thread(target=probe, daemon=True, name="pixseek-hub-probe")
    thread.start()
    thread.join(timeout)
    return None if reached.is_set() else endpoint


def no_hub_message(name: str, preset: str | None, hub: str) -> str:
    label = f"'{name}' (preset {preset})" if preset else f"'{name}'"
    return (
        f"cannot load model {label}: it is not in the local Hugging Face cache and {hub} "
        f"cannot be reached. Get its weights onto this machine (on one with network: "
        f"huggingface-cli download {name}, then copy ~/.cache/huggingface to this one, or "
        "pass the checkpoint's folder with --model /path/to/checkpoint), or use --model offline"
    )


@contextmanager
def quiet_hub() -> Iterator[None]:
    """huggingface_hub's retry warnings off while it downloads: a failure is reported once,
    by the caller."""
    logger = logging.getLogger("huggingface_hub")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)
