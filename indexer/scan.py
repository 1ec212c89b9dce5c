"""Walk library folders: stream (path, size, mtime) for every image file not ignored.

Streaming keeps memory flat whatever the library size (architecture invariant 7): directories are
read one at a time with ``os.scandir`` and nothing is collected.
"""

from __future__ import annotations

import fnmatch
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Seen:
    path: str
    size: int
    mtime_ns: int


def _glob_to_fnmatch(pattern: str) -> str:
    # fnmatch's * already crosses "/", so "**/" means "at any depth" once paths start with "/".
    return pattern.replace("**/", "*/").replace("/**", "/*")


class Scanner:
    def __init__(
        self, extensions: list[str], ignore: list[str], follow_symlinks: bool = False
    ) -> None:
        self.extensions = {e.lower() for e in extensions}
        self.patterns = [_glob_to_fnmatch(p) for p in ignore]
        self.follow_symlinks = follow_symlinks

    def ignored(self, rel: str) -> bool:
        """``rel`` is the path below the root, "/"-separated and starting with "/"."""
        return any(fnmatch.fnmatchcase(rel, p) for p in self.patterns)

    def wants(self, path: str, root: str) -> bool:
        """Whether ``path`` is still a file the scan of ``root`` would report."""
        rel = "/" + os.path.relpath(path, root).replace(os.sep, "/")
        if os.path.splitext(path)[1].lower() not in self.extensions or self.ignored(rel):
            return False
        try:
            st = os.stat(path, follow_symlinks=self.follow_symlinks)
        except OSError:
            return False
        return stat.S_ISREG(st.st_mode)

    def walk(self, root: str | Path) -> Iterator[Seen]:
        root = os.fspath(root)
        if os.path.isfile(root):
            st = os.stat(root)
            if os.path.splitext(root)[1].lower() in self.extensions:
                yield Seen(root, st.st_size, st.st_mtime_ns)
            return
        stack = [root]
        while stack:
            folder = stack.pop()
            try:
                with os.scandir(folder) as it:
                    entries = sorted(it, key=lambda e: e.name)
            except OSError:
                continue  # an unreadable folder is skipped, not fatal
            subdirs = []
            for entry in entries:
                rel = "/" + os.path.relpath(entry.path, root).replace(os.sep, "/")
                if self.ignored(rel):
                    continue
                try:
                    if entry.is_dir(follow_symlinks=self.follow_symlinks):
                        subdirs.append(entry.path)
                        continue
                    if not entry.is_file(follow_symlinks=self.follow_symlinks):
                        continue
                    if os.path.splitext(entry.name)[1].lower() not in self.extensions:
                        continue
                    st = entry.stat(follow_symlinks=self.follow_symlinks)
                except OSError:
                    continue
                yield Seen(entry.path, st.st_size, st.st_mtime_ns)
            stack.extend(reversed(subdirs))
