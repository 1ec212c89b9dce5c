"""``pixseek duplicates`` as a person runs it: the groups, --json, --move-to with its
journal, and --undo leaving the library byte for byte as it was."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from benchmarks.duplicates import make_copies
from tests.cli import pixseek

pytestmark = pytest.mark.slow  # runs pixseek as processes


def tree(folder: Path) -> dict[str, str]:
    """{path relative to folder: blake2b of the bytes} of every file below it."""
    return {str(p.relative_to(folder)): hashlib.blake2b(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def indexed(tmp_path, samples):
    """Three photos with near-duplicates in other folders, and one without any."""
    lib = tmp_path / "photos"
    by_name = {p.name: p.path for p in samples}
    trip, later, edits = lib / "2021" / "trip", lib / "2022", lib / "2022" / "edits"
    for folder in (trip, later, edits):
        folder.mkdir(parents=True)
    shutil.copy2(by_name["chelsea_cat"], trip / "chelsea_cat.png")
    make_copies(by_name["chelsea_cat"], later, "chelsea_cat", ["half"])
    shutil.copy2(by_name["espresso_cup"], trip / "espresso_cup.png")
    make_copies(by_name["espresso_cup"], later, "espresso_cup", ["jpeg40"])
    make_copies(by_name["espresso_cup"], edits, "espresso_cup", ["brighter"])
    shutil.copy2(by_name["lunar_surface"], lib / "lunar_surface.png")
    make_copies(by_name["lunar_surface"], lib, "lunar_surface", ["crop5"])
    shutil.copy2(by_name["astronaut_portrait"], lib / "astronaut_portrait.png")
    data = tmp_path / "data"
    summary = json.loads(pixseek(data, "index", str(lib), "--json").stdout)
    assert summary["encoded"] == 8 and summary["failed"] == 0
    return data, lib


def test_groups_as_json_and_as_text(indexed):
    data, lib = indexed
    groups = json.loads(pixseek(data, "duplicates", "--json").stdout)
    assert len(groups) == 3
    for group in groups:
        assert {"id", "path"} <= group["keep"].keys()
        for other in group["others"]:
            assert {"id", "path", "similarity"} <= other.keys() and other["similarity"] >= 0.9
    kept = sorted(Path(g["keep"]["path"]).name for g in groups)
    # The originals: the most pixels, then the largest file.
    assert kept == ["chelsea_cat.png", "espresso_cup.png", "lunar_surface.png"]
    others = sorted(Path(o["path"]).name for g in groups for o in g["others"])
    assert others == ["chelsea_cat__half.jpg", "espresso_cup__brighter.jpg",
                      "espresso_cup__jpeg40.jpg", "lunar_surface__crop5.jpg"]

    proc = pixseek(data, "duplicates")
    blocks = proc.stdout.strip().split("\n\n")
    assert len(blocks) == 3
    for block in blocks:
        lines = block.splitlines()
        assert lines[0].startswith("keep ") and not any(x.startswith("keep") for x in lines[1:])
    assert "3 groups of near-duplicates, 4 photos besides the ones to keep" in proc.stderr
    # A threshold no copy reaches: no groups.
    assert json.loads(pixseek(data, "duplicates", "--threshold", "1", "--json").stdout) == []


def test_move_to_then_undo_leaves_the_library_byte_identical(indexed, tmp_path):
    data, lib = indexed
    before = tree(lib)
    dest = tmp_path / "duplicates"
    report = json.loads(pixseek(data, "duplicates", "--move-to", str(dest), "--json").stdout)
    assert report["moved"] == 4 and report["failed"] == 0 and not report["skipped"]
    journal = Path(report["journal"])
    assert journal.parent == dest and "journal" in journal.name
    # Paths relative to the library root (the folder holding every indexed path).
    moved = tree(dest)
    assert set(moved) == {journal.name, "2022/chelsea_cat__half.jpg",
                          "2022/espresso_cup__jpeg40.jpg", "2022/edits/espresso_cup__brighter.jpg",
                          "lunar_surface__crop5.jpg"}
    after_move = tree(lib)
    assert set(after_move) == set(before) - {k for k in moved if k != journal.name}
    for rel, digest in moved.items():  # moved, not changed; nothing deleted
        assert rel == journal.name or before[rel] == digest
    listed = json.loads(journal.read_text())
    assert len(listed["moves"]) == 4 and all(m["moved"] for m in listed["moves"])
    assert {Path(m["from"]).relative_to(lib).as_posix() for m in listed["moves"]} == \
        set(moved) - {journal.name}

    proc = pixseek(data, "duplicates", "--undo", str(journal))
    assert "put back 4 photos" in proc.stdout
    assert tree(lib) == before
    assert tree(dest) == {journal.name: tree(dest)[journal.name]}  # empty folders pruned
    assert not (dest / "2022").exists()
    assert json.loads(journal.read_text())["state"] == "undone"
    # Twice is harmless.
    again = json.loads(pixseek(data, "duplicates", "--undo", str(journal), "--json").stdout)
    assert again["restored"] == 0 and again["already_back"] == 4
    assert tree(lib) == before


def test_undo_never_overwrites(indexed, tmp_path):
    data, lib = indexed
    dest = tmp_path / "dups"
    report = json.loads(pixseek(data, "duplicates", "--move-to", str(dest), "--json").stdout)
    taken = lib / "lunar_surface__crop5.jpg"
    taken.write_bytes(b"a new file at the old place")
    proc = pixseek(data, "duplicates", "--undo", report["journal"], check=False)
    assert proc.returncode == 1 and "put back 3 photos" in proc.stdout
    assert "a file is at its old place again" in proc.stderr
    assert taken.read_bytes() == b"a new file at the old place"
    assert (dest / "lunar_surface__crop5.jpg").is_file()


@pytest.mark.parametrize(("args", "message"), [
    (["--undo", "{journal}", "--move-to", "{dest}"], "give it alone"),
    (["--undo", "{bogus}"], "is not a journal of pixseek duplicates --move-to"),
    (["--undo", "{missing}"], "cannot read the journal"),
])
def test_bad_undo_is_one_line(tmp_path, args, message):
    bogus = tmp_path / "notes.json"
    bogus.write_text('{"hello": 1}')
    values = {"journal": str(bogus), "dest": str(tmp_path / "d"), "bogus": str(bogus),
              "missing": str(tmp_path / "nope.json")}
    proc = pixseek(tmp_path / "data", "duplicates", *(a.format(**values) for a in args),
                   check=False)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and message in lines[0], proc.stderr


def test_an_empty_library_says_what_to_do(tmp_path):
    proc = pixseek(tmp_path / "data", "duplicates", check=False)
    assert proc.returncode == 2 and "run pixseek index FOLDER first" in proc.stderr
