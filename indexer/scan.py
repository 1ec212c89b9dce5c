"""Walk library folders: stream (path, size, mtime) for every image file not ignored.

Streaming keeps memory flat whatever the library size (architecture invariant 7): directories are
read one at a time with ``os.scandir`` and nothing is collected.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pathspec


@dataclass(frozen=True)
class Seen:
    path: str
    size: int
    mtime_ns: int


def relative(path: str, root: str) -> str:
    """``path`` below ``root``, "/"-separated: what ignore patterns are matched against."""
    return os.path.relpath(path, root).replace(os.sep, "/")


class Scanner:
    def __init__(
        self, extensions: list[str], ignore: list[str], follow_symlinks: bool = False
    ) -> None:
        self.extensions = {e.lower() for e in extensions}
        # .gitignore semantics (pathspec): "**/" is any depth, a leading "/" anchors a
        # pattern at the root, "*.tmp" matches at any depth, "name/**" what is inside.
        self.spec = pathspec.GitIgnoreSpec.from_lines(ignore)
        self.follow_symlinks = follow_symlinks

    def ignored(self, rel: str, is_dir: bool = False) -> bool:
        """``rel`` is the path below the root, "/"-separated (a leading "/" is optional).
        A folder matched as a folder ("@eaDir/" against "**/@eaDir/**") is not entered."""
        rel = rel.lstrip("/")
        return self.spec.match_file(rel + "/" if is_dir else rel)

    def wants(self, path: str, root: str) -> bool:
        """Whether ``path`` is still a file the scan of ``root`` would report."""
        rel = relative(path, root)
        folders = rel.split("/")[:-1]
        inside_ignored = any(self.ignored("/".join(folders[:i + 1]), is_dir=True)
                             for i in range(len(folders)))
        if (os.path.splitext(path)[1].lower() not in self.extensions or inside_ignored
                or self.ignored(rel)):
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
                rel = relative(entry.path, root)
                try:
                    if entry.is_dir(follow_symlinks=self.follow_symlinks):
                        if not self.ignored(rel, is_dir=True):
                            subdirs.append(entry.path)
                        continue
                    if self.ignored(rel):
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
