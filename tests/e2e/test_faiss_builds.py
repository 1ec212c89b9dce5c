"""One FAISS build: faiss-cpu (the ``cpu`` extra) or faiss-gpu (``gpu``), never both, since
they install the same files. Without FAISS, a command that uses the index is one error line
naming both extras; ``pixseek doctor`` fails on no FAISS, on a broken one and on two builds.

The commands run as subprocesses of this venv's Python. "No FAISS" is a real environment
without it: a folder of links to everything in this venv's site-packages but FAISS's own
files and metadata, used as the only site folder (``python -S`` plus ``site.addsitedir``,
which also runs the editable install's ``.pth``). A broken FAISS is an empty ``faiss``
package first on ``PYTHONPATH``, which is what uninstalling one of two builds leaves. The
doctor's view of the installed builds reads real ``.dist-info`` metadata from a fake site
folder."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from pixseek import doctor
from search.faiss_lib import distributions

pytestmark = pytest.mark.slow  # runs pixseek as processes in built environments

RUN = ("import site, sys\n"
       "if sys.argv[1]: site.addsitedir(sys.argv[1])\n"
       "from pixseek.cli import main\n"
       "sys.argv = ['pixseek', *sys.argv[2:]]\n"
       "main()\n")
INSTALL = ("pip install 'pixseek[cpu]'", "pip install 'pixseek[gpu]'")


@pytest.fixture(scope="module")
def site_without_faiss(tmp_path_factory) -> Path:
    """This venv's site-packages, less faiss/, faiss_cpu-*.dist-info, faiss_cpu.libs."""
    site = Path(sysconfig.get_paths()["purelib"])
    assert site == Path(sysconfig.get_paths()["platlib"])
    farm = tmp_path_factory.mktemp("site-without-faiss")
    for entry in site.iterdir():
        if not entry.name.lower().startswith("faiss"):
            (farm / entry.name).symlink_to(entry)
    return farm


def pixseek(tmp_path: Path, *args: str, site: Path | None = None,
            pythonpath: Path | None = None) -> subprocess.CompletedProcess:
    """``pixseek --config empty --data-dir tmp/data --model offline ARGS`` in a subprocess,
    with ``site`` as its only site folder if given."""
    config = tmp_path / "config.yaml"
    config.write_text("{}\n")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PIXSEEK_") and k != "PYTHONPATH"}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    python = [sys.executable, "-S"] if site is not None else [sys.executable]
    return subprocess.run(
        [*python, "-c", RUN, str(site or ""), "--config", str(config),
         "--data-dir", str(tmp_path / "data"), "--model", "offline", *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )


def fake_site(folder: Path, *dists: tuple[str, str]) -> list[tuple[str, str]]:
    """Write ``NAME-VERSION.dist-info/METADATA`` for each ``(name, version)`` into
    ``folder`` and read them back as the doctor does, through importlib.metadata."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, version in dists:
        info = folder / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    return distributions(importlib.metadata.distributions(path=[str(folder)]))


@pytest.mark.parametrize("args", [["status"], ["index", "."]])
def test_no_faiss_is_one_line_naming_both_extras(tmp_path, site_without_faiss, args):
    done = pixseek(tmp_path, *args, site=site_without_faiss)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1, done.stderr
    assert len(lines) == 1 and lines[0].startswith("Error: FAISS is not installed"), done.stderr
    assert all(command in lines[0] for command in INSTALL)


@pytest.fixture
def incomplete_faiss(tmp_path) -> Path:
    """A folder whose ``faiss`` package has no FAISS in it (no IndexFlatIP)."""
    (tmp_path / "shadow" / "faiss").mkdir(parents=True)
    (tmp_path / "shadow" / "faiss" / "__init__.py").write_text("")
    return tmp_path / "shadow"


def test_an_incomplete_faiss_package_says_reinstall(tmp_path, incomplete_faiss):
    done = pixseek(tmp_path, "status", pythonpath=incomplete_faiss)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1, done.stderr
    assert len(lines) == 1 and "the faiss package is incomplete" in lines[0], done.stderr
    assert "pip install --force-reinstall --no-deps faiss" in lines[0]


def test_doctor_names_the_build_to_reinstall(tmp_path, incomplete_faiss):
    [(name, version)] = distributions()  # this venv's one build, whose files are shadowed
    done = pixseek(tmp_path, "doctor", "--json", pythonpath=incomplete_faiss)
    assert done.returncode == 1, done.stderr
    faiss = {r["check"]: r for r in json.loads(done.stdout)}["faiss"]
    assert faiss["status"] == "FAIL"
    assert f"{name} {version} is installed but the faiss package is incomplete" in faiss["detail"]
    assert f"pip install --force-reinstall --no-deps {name}=={version}" in faiss["detail"]


def test_doctor_without_faiss_fails_and_names_both_extras(tmp_path, site_without_faiss):
    done = pixseek(tmp_path, "doctor", "--json", site=site_without_faiss)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    faiss = {r["check"]: r for r in json.loads(done.stdout)}["faiss"]
    assert faiss["status"] == "FAIL"
    assert all(command in faiss["detail"] for command in INSTALL), faiss


def test_one_build_is_ok_and_named(tmp_path):
    found = fake_site(tmp_path / "site", ("faiss-cpu", "1.15.1"), ("numpy", "2.0.0"))
    assert found == [("faiss-cpu", "1.15.1")]
    status, detail = doctor.faiss_status(found)
    assert status == "ok", detail
    assert "(faiss-cpu 1.15.1)" in detail and ("CPU only" in detail or "GPU" in detail)


@pytest.mark.parametrize(("dists", "keep", "drop"), [
    ([("faiss-cpu", "1.15.1"), ("faiss-gpu", "1.15.1")], "faiss-gpu==1.15.1", "faiss-cpu"),
    ([("faiss-cpu", "1.15.1"), ("faiss-gpu-cu12", "1.14.1.post1")],
     "faiss-gpu-cu12==1.14.1.post1", "faiss-cpu"),
    ([("faiss-gpu-cu12", "1.14.1"), ("faiss-gpu", "1.15.1"), ("faiss-cpu", "1.15.1")],
     "faiss-gpu==1.15.1", "faiss-cpu faiss-gpu-cu12"),
])
def test_two_builds_fail_with_the_commands_that_leave_one(tmp_path, dists, keep, drop):
    found = fake_site(tmp_path / "site", *dists)
    assert len(found) == len(dists)
    status, detail = doctor.faiss_status(found)
    assert status == "FAIL"
    assert f"{len(dists)} FAISS builds installed" in detail
    assert f"pip uninstall -y {drop} && pip install --force-reinstall --no-deps {keep}" in detail


def test_only_faiss_builds_count(tmp_path):
    found = fake_site(tmp_path / "site", ("faiss", "1.9.0"), ("faiss-gpu-cu11", "1.8.0.2"),
                      ("langchain-faiss", "0.1"), ("faiss-instant", "0.1"), ("faissx", "1"))
    assert found == [("faiss", "1.9.0"), ("faiss-gpu-cu11", "1.8.0.2")]


def test_this_environment_has_exactly_one_build():
    """The install this suite runs in (``make setup``: the ``cpu`` extra) is a healthy one."""
    assert len(distributions()) == 1
    assert doctor.check_faiss(None)[0] == "ok"  # type: ignore[arg-type]
