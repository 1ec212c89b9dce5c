"""The scanner (ignore globs, extensions, symlinks, unreadable folders) and the indexer lock,
tested directly on real folders and real processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from indexer.lock import IndexLock
from indexer.scan import Scanner
from search.config import LibraryConfig
from search.errors import PixseekError

DEFAULTS = LibraryConfig()


def touch(root: Path, *names: str) -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")


def found(scanner: Scanner, root: Path) -> list[str]:
    return sorted(os.path.relpath(s.path, root) for s in scanner.walk(root))


def test_default_ignores_skip_hidden_and_nas_folders(tmp_path):
    touch(tmp_path, "a.jpg", "B.JPEG", "notes.txt", ".hidden.jpg", ".git/x.jpg",
          "trip/c.png", "trip/@eaDir/c.png", "trip/.thumbs/d.jpg", "#recycle/e.jpg",
          "deep/er/f.webp")
    scanner = Scanner(DEFAULTS.extensions, DEFAULTS.ignore)
    assert found(scanner, tmp_path) == ["B.JPEG", "a.jpg", "deep/er/f.webp", "trip/c.png"]


def test_gitignore_semantics_for_custom_globs(tmp_path):
    touch(tmp_path, "raw/a.jpg", "2024/raw/b.jpg", "x.tmp.jpg", "2024/edit.tmp.jpg",
          "keep/c.jpg", "Thumbs/d.jpg", "2024/Thumbs/e.jpg")
    scanner = Scanner([".jpg"], ["/raw/**", "*.tmp.jpg", "Thumbs/"])
    # "/raw/**" only at the root; "*.tmp.jpg" at any depth; "Thumbs/" folders anywhere.
    assert found(scanner, tmp_path) == ["2024/raw/b.jpg", "keep/c.jpg"]
    assert scanner.ignored("raw", is_dir=True) and not scanner.ignored("2024/raw", is_dir=True)
    # wants() agrees with the walk, for files inside ignored folders too.
    root = str(tmp_path)
    assert not scanner.wants(str(tmp_path / "2024/Thumbs/e.jpg"), root)
    assert not scanner.wants(str(tmp_path / "raw/a.jpg"), root)
    assert scanner.wants(str(tmp_path / "2024/raw/b.jpg"), root)


def test_symlinks_are_followed_only_when_asked(tmp_path):
    outside = tmp_path / "outside"
    touch(outside, "linked.jpg", "sub/inner.jpg")
    lib = tmp_path / "lib"
    touch(lib, "own.jpg")
    (lib / "file-link.jpg").symlink_to(outside / "linked.jpg")
    (lib / "dir-link").symlink_to(outside / "sub", target_is_directory=True)
    (lib / "dangling.jpg").symlink_to(tmp_path / "nowhere.jpg")
    assert found(Scanner([".jpg"], []), lib) == ["own.jpg"]
    assert found(Scanner([".jpg"], [], follow_symlinks=True), lib) == [
        "dir-link/inner.jpg", "file-link.jpg", "own.jpg"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any folder")
def test_an_unreadable_folder_is_skipped(tmp_path):
    touch(tmp_path, "ok.jpg", "locked/secret.jpg")
    (tmp_path / "locked").chmod(0)
    try:
        assert found(Scanner([".jpg"], []), tmp_path) == ["ok.jpg"]
    finally:
        (tmp_path / "locked").chmod(0o755)


def test_a_file_root_is_reported_alone(tmp_path):
    touch(tmp_path, "one.jpg")
    seen = list(Scanner([".jpg"], []).walk(tmp_path / "one.jpg"))
    assert [s.path for s in seen] == [str(tmp_path / "one.jpg")] and seen[0].size == 1


def test_one_indexer_per_data_dir(tmp_path):
    with IndexLock(tmp_path):
        with pytest.raises(PixseekError, match="another pixseek indexer is running"):
            IndexLock(tmp_path).__enter__()
        # Another process is refused as well.
        probe = (
            "import sys\nfrom indexer.lock import IndexLock\n"
            "try:\n    IndexLock(sys.argv[1]).__enter__()\nexcept Exception as e:\n"
            "    print(e); sys.exit(3)\n"
        )
        proc = subprocess.run([sys.executable, "-c", probe, str(tmp_path)],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 3 and "another pixseek indexer" in proc.stdout
    with IndexLock(tmp_path):  # released on exit
        pass


def test_the_lock_dies_with_its_process(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\nfrom indexer.lock import IndexLock\n"
         "lock = IndexLock(sys.argv[1]); lock.__enter__()\n"  # kept: filelock frees on GC
         "print('held', flush=True); time.sleep(60)",
         str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(PixseekError):
            IndexLock(tmp_path).__enter__()
    finally:
        holder.kill()
        holder.wait()
    with IndexLock(tmp_path):  # the OS released it with the killed process
        pass
