"""One error path: every subcommand, given a bad value of each of its flags, prints one
line on stderr (no traceback, no usage block) and exits 2. Run in-process through the
console script's own ``main`` (a subprocess each would take minutes)."""

from __future__ import annotations

import os

import pytest

CASES = [
    # global options
    (["--device", "tpu", "status"], "model.device"),
    (["--precision", "fp8", "status"], "model.precision"),
    (["--runtime", "tensorrt", "status"], "model.runtime"),
    (["--config", "{tmp}/missing.yaml", "status"], "missing.yaml"),
    (["--bogus", "status"], "No such option"),
    # index
    (["index", "--batch-size", "0", "{tmp}"], "model.batch_size"),
    (["index", "--batch-size", "many", "{tmp}"], "--batch-size"),
    (["index", "--workers", "-1", "{tmp}"], "indexer.decode_workers"),
    (["index", "{tmp}/no-such-folder"], "no such file or folder"),
    # watch
    (["watch", "{tmp}/no-such-folder"], "not a folder"),
    # search
    (["search", "cat", "-k", "0"], "k must be a whole number from 1 to 1000, not '0'"),
    (["search", "cat", "--offset", "-1"], "--offset"),
    (["search", "cat", "--min-score", "2"], "--min-score"),
    (["search", "cat", "--sort", "random"], "--sort"),
    (["search", "cat", "--after", "last week"], "after must be a date"),
    (["search", "cat", "--before", "2024-02-30"], "before must be a date"),
    (["search", "cat", "--after", "2024-02-01", "--before", "2024-01-01"], "earlier than"),
    (["search", "--image", "{tmp}/missing.jpg"], "cannot read the query image"),
    (["search", "cat", "--not", " "], "not: give the text"),
    (["search", "0:cat"], "a weight must be above 0"),
    (["search", "   "], "the query is empty"),
    (["search", "--folder", "{tmp}/a-file.txt", "cat"], "--folder"),
    # classify
    (["classify", "{tmp}/missing.jpg", "a cat"], "cannot read the query image"),
    (["classify", "{tmp}/a-file.txt"], "Missing argument"),
    (["classify", "--templates", "{tmp}/none.txt", "{tmp}/a-file.txt", "a cat"], "none.txt"),
    (["classify", "--templates", "{tmp}/a-file.txt", "{tmp}/a-file.txt", "a cat"], "has no {}"),
    # serve
    (["serve", "--port", "70000"], "--port"),
    (["serve", "--host", "0.0.0.0"], "refusing to serve on 0.0.0.0"),
    # gc, status, db upgrade take no values
    (["gc", "--json=yes"], "does not take a value"),
    (["status", "--everything"], "No such option"),
    (["db", "upgrade", "now"], "unexpected extra argument"),
    # bench
    (["bench", "retrieval", "--images", "{tmp}"], "Missing option '--captions'"),
    (["bench", "retrieval", "--captions", "{tmp}/none.csv", "--images", "{tmp}"], "none.csv"),
    (["bench", "samples", "{tmp}/a-file.txt"], "a-file.txt"),
    (["bench", "synth", "{tmp}/set", "--pairs", "1"], "pairs must be"),
    (["bench", "synth", "{tmp}/set", "--test-fraction", "1.5"], "test fraction"),
    (["bench", "synth", "{tmp}"], "not a synthetic set"),
]


@pytest.mark.parametrize(("args", "message"), CASES, ids=[" ".join(a) for a, _ in CASES])
def test_a_bad_value_is_one_line_and_exit_2(args, message, tmp_path, cli_error):
    (tmp_path / "a-file.txt").write_text("not a folder")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
    line = cli_error(["--data-dir", str(tmp_path / "data"), "--model", "offline", *argv])
    assert message in line


@pytest.mark.parametrize("flag", ["--folder", "--not", "--similar"])
def test_too_many_repeated_values_are_one_line(flag, tmp_path, cli_error):
    """991 --folder flags would overflow SQLite's expression depth into a traceback; every
    repeated field has one limit (search.query.MAX_REPEATED)."""
    from search.query import MAX_REPEATED

    many = [flag, str(tmp_path)] * (MAX_REPEATED + 1)
    line = cli_error(["--data-dir", str(tmp_path / "data"), "--model", "offline",
                      "search", "cat", *many])
    assert f"at most {MAX_REPEATED} values per search, not {MAX_REPEATED + 1}" in line
    assert flag.lstrip("-") in line


@pytest.mark.parametrize("command", [["status"], ["index", "{tmp}"], ["search", "cat"], ["gc"],
                                     ["db", "upgrade"]])
@pytest.mark.parametrize("where", ["database_url", "data_dir"])
def test_a_database_folder_that_cannot_be_made_is_one_line(command, where, tmp_path,
                                                           monkeypatch, cli_failure):
    """A database where no folder can be made (here under a file, which stops root too)
    is one line from index and status, not a traceback."""
    for key in [k for k in os.environ if k.startswith("PIXSEEK_")]:
        monkeypatch.delenv(key)
    (tmp_path / "a-file.txt").write_text("not a folder")
    blocked = tmp_path / "a-file.txt" / "data"
    data = tmp_path / "data"
    if where == "database_url":
        monkeypatch.setenv("PIXSEEK_DATABASE_URL", f"sqlite:///{blocked / 'x.db'}")
    else:
        data = blocked
    argv = [a.replace("{tmp}", str(tmp_path)) for a in command]
    line = cli_failure(["--data-dir", str(data), "--model", "offline", *argv])
    assert str(blocked) in line


def test_a_file_the_system_refuses_is_one_line(tmp_path, cli_failure):
    (tmp_path / "a-file.txt").write_text("not a folder")
    line = cli_failure(["bench", "samples", str(tmp_path / "a-file.txt" / "photos")])
    assert "a-file.txt" in line
