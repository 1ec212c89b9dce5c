"""What the pixseek command prints for a person: the demo (marks, a hint that runs as
printed), dates in a date order, an unknown folder named, counts in the singular."""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ENV = {**os.environ, "PIXSEEK_INDEXER_DECODE_WORKERS": "1"}


def run(cmd: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=ENV, timeout=180)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """``pixseek demo`` run as ``make demo`` runs it: the venv's script, a relative data dir."""
    root = tmp_path_factory.mktemp("demo")
    script = Path(sys.executable).parent / "pixseek"
    pixseek = [str(script)] if script.exists() else [sys.executable, "-m", "pixseek"]
    proc = run([*pixseek, "--data-dir", "data", "--model", "offline", "demo"], root)
    return root, pixseek, proc.stdout


def test_demo_marks_strong_and_weak_and_its_hint_runs_as_printed(demo):
    root, _, out = demo
    hits = re.findall(r"^  (-?\d\.\d{3})  (strong|weak)  +(\S+)$", out, re.MULTILINE)
    assert len(hits) == 15  # 3 for each of the 5 queries
    assert ("strong", "chelsea_cat.png") in {(mark, name) for _, mark, name in hits}
    assert {mark for _, mark, _ in hits} == {"strong", "weak"}
    hint = re.search(r"^Try your own: (.+)$", out, re.MULTILINE).group(1)
    proc = run(shlex.split(hint), root)  # pasted into a shell in the same folder
    assert proc.stdout.splitlines() and "motorcycle" in proc.stdout.splitlines()[0]


def test_a_date_order_prints_the_dates(demo):
    root, pixseek, _ = demo
    out = run([*pixseek, "--data-dir", "data", "--model", "offline", "search", "fruit",
               "--sort", "newest", "-k", "4"], root).stdout
    rows = [re.fullmatch(r"(-?\d\.\d{4})  (\d{4}-\d\d-\d\d \d\d:\d\d)  (/.+)", line)
            for line in out.splitlines()]
    assert len(rows) == 4 and all(rows), out


def test_an_unknown_folder_is_one_line_naming_it(demo):
    root, pixseek, _ = demo
    proc = run([*pixseek, "--data-dir", "data", "--model", "offline", "search", "a cat",
                "--folder", "/nonexistent"], root, check=False)
    assert proc.returncode == 2  # as every other bad input
    assert proc.stderr.strip() == "Error: folder: no indexed photos are under /nonexistent"


def test_one_file_is_one_file(demo):
    root, pixseek, _ = demo
    photo = next((root / "data" / "samples").glob("chelsea_cat.*"))
    out = run([*pixseek, "--data-dir", "data", "--model", "offline", "index", str(photo)],
              root).stdout
    assert out.startswith("1 file: 0 encoded, 0 reused, 1 unchanged"), out
