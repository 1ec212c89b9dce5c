"""``pixseek doctor`` and the systemd units in deploy/. The doctor runs in-process through
the console script's own ``main``; it must only look, never create or upgrade anything."""

from __future__ import annotations

import configparser
import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

from pixseek import doctor
from pixseek.cli import main

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
ALL_CHECKS = [name for name, _ in doctor.CHECKS]


@pytest.fixture
def run_doctor(tmp_path, monkeypatch, capsys):
    """pixseek --config empty --data-dir tmp/data --model M doctor ARGS -> (exit code, out)."""
    config = tmp_path / "config.yaml"
    config.write_text("{}\n")
    for key in [k for k in list(os.environ) if k.startswith("PIXSEEK_")]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)

    def run(*args: str, model: str = "offline", data: Path | None = None) -> tuple[int, str]:
        monkeypatch.setattr(sys, "argv", [
            "pixseek", "--config", str(config), "--data-dir", str(data or tmp_path / "data"),
            "--model", model, "doctor", *args,
        ])
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code or 0
        captured = capsys.readouterr()
        assert "Traceback" not in captured.err
        return code, captured.out

    return run


def _by_name(out: str) -> dict[str, dict]:
    return {r["check"]: r for r in json.loads(out)}


def _make_db(data: Path):
    from search.store import Store

    return Store(f"sqlite:///{data / 'pixseek.db'}")


def test_a_fresh_data_dir_is_healthy_and_left_untouched(run_doctor, tmp_path):
    code, out = run_doctor("--json")
    assert code == 0, out
    results = json.loads(out)
    assert [r["check"] for r in results] == ALL_CHECKS
    assert {r["status"] for r in results} <= {"ok", "warn"}
    assert all(set(r) == {"check", "status", "detail"} for r in results)
    assert not (tmp_path / "data").exists()  # the doctor created nothing


def test_text_output_is_one_line_per_check(run_doctor, tmp_path):
    _make_db(tmp_path / "data").close()
    code, out = run_doctor()
    assert code == 0, out
    lines = out.strip().splitlines()
    assert [line.split(":")[0].split()[-1] for line in lines] == ALL_CHECKS
    assert all(line.split()[0] in ("ok", "warn") for line in lines)
    by_name = {line.split(":")[0].split()[-1]: line for line in lines}
    assert "0 files, 0 indexed, 0 failed" in by_name["library"]
    assert "current" in by_name["index"]


def test_a_missing_model_folder_fails(run_doctor, tmp_path):
    code, out = run_doctor("--json", model=str(tmp_path / "no-such-checkpoint"))
    assert code == 1
    model = _by_name(out)["model"]
    assert model["status"] == "FAIL" and "no such folder" in model["detail"]


def test_a_folder_without_a_checkpoint_fails(run_doctor, tmp_path):
    (tmp_path / "empty-model").mkdir()
    code, out = run_doctor("--json", model=str(tmp_path / "empty-model"))
    assert code == 1
    assert "config.json" in _by_name(out)["model"]["detail"]


def test_a_schema_behind_head_is_reported_not_upgraded(run_doctor, tmp_path):
    from alembic import command

    from search.migrate import alembic_config, current_revision

    store = _make_db(tmp_path / "data")
    cfg = alembic_config(store.engine)
    with store.engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.downgrade(cfg, "0001")
    code, out = run_doctor("--json")
    assert code == 0, out
    results = _by_name(out)
    assert results["database"]["status"] == "warn"
    assert "schema at 0001" in results["database"]["detail"]
    assert "pixseek db upgrade" in results["database"]["detail"]
    assert "skipped" in results["library"]["detail"]
    assert current_revision(store.engine) == "0001"  # still behind: the doctor only looked
    store.close()


def test_an_unknown_schema_revision_fails(run_doctor, tmp_path):
    from sqlalchemy import text

    store = _make_db(tmp_path / "data")
    with store.engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    store.close()
    code, out = run_doctor("--json")
    assert code == 1
    database = _by_name(out)["database"]
    assert database["status"] == "FAIL" and "9999" in database["detail"]


@contextmanager
def read_only(folder: Path):
    """``folder`` made read-only: chmod 0o555, and for root (whom permission bits do not
    stop) a read-only bind mount of it; skips where neither can be made."""
    from search.disk import writable
    from tests.e2e.test_storage_faults import read_only_view

    folder.chmod(0o555)
    try:
        if not writable(folder):
            yield folder
        else:
            with read_only_view(folder, folder.parent / f"{folder.name}-ro") as view:
                yield view
    finally:
        folder.chmod(0o755)


def _is_not_a_folder(tmp_path: Path) -> Path:
    """A path whose folder cannot be made, even by root: it would sit under a file."""
    (tmp_path / "a-file").write_text("not a folder")
    return tmp_path / "a-file" / "data"


def test_a_data_dir_that_cannot_be_made_fails(run_doctor, tmp_path):
    code, out = run_doctor("--json", data=_is_not_a_folder(tmp_path))
    assert code == 1, out
    results = _by_name(out)
    assert results["data_dir"]["status"] == "FAIL"
    assert "a-file/data cannot be created" in results["data_dir"]["detail"]
    assert results["database"]["status"] == "FAIL"
    assert "cannot be created" in results["database"]["detail"]


@pytest.mark.parametrize("where", ["under-a-file", "proc"])
def test_a_database_url_that_cannot_be_made_fails(run_doctor, tmp_path, monkeypatch, where):
    """A database_url in a folder that cannot exist is a failure, not "not created yet"
    (index would then print a traceback)."""
    if where == "proc":
        if not Path("/proc/self").is_dir():
            pytest.skip("no /proc here")
        file = Path("/proc/nope/x.db")
    else:
        file = _is_not_a_folder(tmp_path) / "x.db"
    monkeypatch.setenv("PIXSEEK_DATABASE_URL", f"sqlite:///{file}")
    code, out = run_doctor("--json")
    assert code == 1, out
    database = _by_name(out)["database"]
    assert database["status"] == "FAIL" and "cannot be created" in database["detail"]
    assert str(file.parent) in database["detail"]


def test_a_read_only_data_dir_fails_though_searching_works(run_doctor, tmp_path):
    _make_db(tmp_path / "data").close()
    with read_only(tmp_path / "data") as data:
        code, out = run_doctor("--json", data=data)
    assert code == 1, out
    results = _by_name(out)
    data_dir, database = results["data_dir"], results["database"]
    assert data_dir["status"] == "FAIL", data_dir
    assert "searching works, indexing cannot" in data_dir["detail"]
    # The database is in it, so it cannot be written either, and says so.
    assert database["status"] == "FAIL", database
    assert "read-only" in database["detail"] and "indexing cannot" in database["detail"]
    assert "0 files, 0 indexed" in results["library"]["detail"]  # it still opens


def test_a_read_only_database_behind_head_fails(run_doctor, tmp_path):
    from alembic import command

    from search.migrate import alembic_config

    store = _make_db(tmp_path / "data")
    cfg = alembic_config(store.engine)
    with store.engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.downgrade(cfg, "0001")
    store.close()
    with read_only(tmp_path / "data") as data:
        code, out = run_doctor("--json", data=data)
    assert code == 1, out
    database = _by_name(out)["database"]
    assert database["status"] == "FAIL" and "schema at 0001" in database["detail"]
    assert "read-only" in database["detail"]


def test_an_empty_read_only_data_dir_fails_the_database(run_doctor, tmp_path):
    (tmp_path / "data").mkdir()
    with read_only(tmp_path / "data") as data:
        code, out = run_doctor("--json", data=data)
    assert code == 1, out
    results = _by_name(out)
    assert results["data_dir"]["status"] == "FAIL"
    assert results["database"]["status"] == "FAIL"
    assert "cannot be created" in results["database"]["detail"]


def test_a_check_that_raises_is_a_fail_line(tmp_path):
    def broken(facts):
        raise RuntimeError("boom\nsecond line")

    facts = doctor.Facts(config=None)  # type: ignore[arg-type]
    assert doctor.run_checks(facts, [("broken", broken)]) == [
        {"check": "broken", "status": "FAIL", "detail": "RuntimeError: boom"}
    ]


@pytest.mark.parametrize(
    ("free_gib", "status"), [(0.5, "FAIL"), (1, "warn"), (4.9, "warn"), (5, "ok"), (500, "ok")]
)
def test_disk_thresholds(free_gib, status):
    got, detail = doctor.disk_status(int(free_gib * 2**30))
    assert got == status and "GiB free" in detail


def test_inotify_threshold_names_the_sysctl():
    assert doctor.inotify_status(100, 8192)[0] == "ok"
    status, detail = doctor.inotify_status(7500, 8192)
    assert status == "warn" and "fs.inotify.max_user_watches=" in detail


def test_inotify_counts_folders_under_the_roots(tmp_path):
    from search.config import load_config

    for name in ("a/b", "a/c", "d"):
        (tmp_path / "photos" / name).mkdir(parents=True)
    empty = tmp_path / "empty.yaml"
    empty.write_text("{}\n")
    config = load_config(empty, {"library.roots": [str(tmp_path / "photos")]}, environ={})
    status, detail = doctor.check_inotify(doctor.Facts(config))
    if sys.platform.startswith("linux"):
        assert status == "ok" and detail.startswith("5 folders to watch")
    else:
        assert "skipped" in detail


@pytest.mark.parametrize(("unit", "command"), [("pixseek-watch", "watch"),
                                               ("pixseek-serve", "serve")])
def test_unit_files_parse_and_restart_on_failure(unit, command):
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # systemd keys are case-sensitive
    parser.read_string((DEPLOY / f"{unit}.service").read_text())
    service = parser["Service"]
    assert service["Type"] == "simple"
    assert service["Restart"] == "on-failure"
    assert service["RestartSec"] == "5"
    assert "PYTHONUNBUFFERED=1" in service["Environment"]
    assert parser["Install"]["WantedBy"] == "default.target"
    exec_start = service["ExecStart"].split()
    assert exec_start[0].endswith("/pixseek") and command in exec_start[1:]
    if command == "serve":
        assert "127.0.0.1" in exec_start  # loopback unless the user opts out with a token
