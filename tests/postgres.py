"""A throwaway PostgreSQL server for the tests: Debian's binaries, a cluster in a temporary
folder, reached through a Unix socket only (no TCP port to collide with anything).

PostgreSQL refuses to run as root, so under root the cluster belongs to the ``postgres``
system user that Debian's package creates, and the server runs as that user.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

SUPERUSER = "pixseek"


def find_bin(name: str) -> str | None:
    """A PostgreSQL server binary: on PATH, else Debian's versioned folder (newest)."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
                        key=lambda p: int(Path(p).parts[4]))
    return candidates[-1] if candidates else None


class Cluster:
    """``start()`` makes and starts the cluster; ``url(db)`` names a database on it."""

    def __init__(self) -> None:
        self.initdb, self.pg_ctl = find_bin("initdb"), find_bin("pg_ctl")
        self.root = Path(tempfile.mkdtemp(prefix="pixseek-pg-"))
        self.data, self.socket = self.root / "data", self.root / "run"
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            self.as_user = ["runuser", "-u", "postgres", "--"]

    @property
    def available(self) -> bool:
        return bool(self.initdb and self.pg_ctl)

    def _run(self, *cmd: str) -> None:
        subprocess.run([*self.as_user, *cmd], check=True, capture_output=True, text=True)

    def start(self) -> None:
        self.socket.mkdir()
        if self.as_user:
            shutil.chown(self.root, "postgres")
            shutil.chown(self.socket, "postgres")
        self._run(self.initdb, "-D", str(self.data), "-U", SUPERUSER, "-A", "trust",
                  "-E", "UTF8", "--no-sync")
        options = f"-c listen_addresses='' -k {self.socket} -c fsync=off -c max_connections=200"
        self._run(self.pg_ctl, "-D", str(self.data), "-l", str(self.root / "server.log"),
                  "-o", options, "-w", "start")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{SUPERUSER}@/{database}?host={self.socket}"

    def new_database(self) -> str:
        """A fresh, empty database; its SQLAlchemy URL."""
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(host=str(self.socket), user=SUPERUSER, dbname="postgres",
                             autocommit=True) as conn:
            try:
                # A locale's collation, as most servers have, not byte order: sorting and
                # ranges on text then differ from SQLite's, and the tests see that.
                conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0 '
                             "LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'")
            except psycopg.Error:  # a server built without ICU
                conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        try:
            self._run(self.pg_ctl, "-D", str(self.data), "-m", "immediate", "stop")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.root, ignore_errors=True)
