"""The ``pixseek`` command as a person runs it: a process of its own, for the tests that
need one (exit codes, stdout and stderr as printed, environment variables, signals)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def pixseek(data: Path, *args: str, env: dict | None = None, check: bool = True,
            workers: int = 0, model: str = "offline", cwd: Path | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m pixseek --data-dir DATA --model MODEL ARGS`` with ``workers`` decode
    processes and ``env`` over this environment; with ``check``, exit 0 or the test fails
    showing stderr."""
    cmd = [sys.executable, "-m", "pixseek", "--data-dir", str(data), "--model", model, *args]
    full_env = {**os.environ, "PIXSEEK_INDEXER_DECODE_WORKERS": str(workers), **(env or {})}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=full_env, cwd=cwd,
                          timeout=timeout)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc
