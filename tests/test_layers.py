"""The shape of the code: which package may import which (``docs/architecture.md``), no
import cycles between modules, and where SQL lives. Read from the source (``ast``), so
every import counts, a function's lazy one too: a lazy import still binds the two modules
together, it only moves the moment the cycle would bite. Imports under ``if TYPE_CHECKING``
do not count: they never run, they only name a type for the checker."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# The import graph, bottom to top: each package and the packages it may import. A new
# package gets a row here (and a line in docs/architecture.md's layout).
ALLOWED = {
    "search": set(),
    "indexer": {"search"},
    "webui": {"search"},
    "migrations": {"search"},
    "training": {"search", "indexer"},
    "pixseek": {"search", "indexer", "webui", "migrations", "training"},
    "benchmarks": {"search", "indexer", "webui", "migrations", "training"},
}


def _modules() -> dict[str, Path]:
    """Every module of the project's packages by dotted name (a package by its own)."""
    found = {}
    for package in ALLOWED:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _type_checking_only(tree: ast.AST) -> set[int]:
    """The ids of the nodes under ``if TYPE_CHECKING:``."""
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for part in node.body for n in ast.walk(part))
    return skip


def _target(name: str) -> str | None:
    """The project module an imported name lives in (its nearest enclosing one)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports(module: str) -> set[str]:
    """The project modules ``module`` imports (``from pkg import mod`` names ``pkg.mod``)."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(), str(path))
    skip = _type_checking_only(tree)
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(filter(None, (_target(alias.name) for alias in node.names)))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[:len(package) - node.level + 1] + [base]).strip(".")
            for alias in node.names:
                whole = f"{base}.{alias.name}"
                found.add(whole if whole in MODULES else _target(base))
    found.discard(None)
    found.discard(module)
    return found


GRAPH = {module: _imports(module) for module in MODULES}


def test_every_package_imports_only_the_layers_below_it():
    wrong = sorted(
        f"{module} imports {other}"
        for module, others in GRAPH.items()
        for other in others
        if other.split(".")[0] != module.split(".")[0]
        and other.split(".")[0] not in ALLOWED[module.split(".")[0]]
    )
    assert not wrong, "\n".join(wrong)


def test_no_module_imports_one_that_imports_it_back():
    """No import cycle of any length, within a package or across packages."""
    cycles, done, path = [], set(), []

    def visit(module: str) -> None:
        path.append(module)
        for other in sorted(GRAPH[module]):
            if other in path:
                cycles.append(" -> ".join(path[path.index(other):] + [other]))
            elif other not in done:
                visit(other)
        path.pop()
        done.add(module)

    for module in sorted(GRAPH):
        if module not in done:
            visit(module)
    assert not cycles, "\n".join(cycles)


def test_the_graph_sees_imports():
    """The parse finds what is there: a lazy import, a relative-free package import."""
    assert "search.store" in GRAPH["indexer.pipeline"]
    assert "webui.service" in GRAPH["webui.photos"]
    assert "webui.urls" in GRAPH["webui.service"]
    assert "search.encoders.names" in GRAPH["search.encoders.clip"]


# The store builds every statement; Alembic's runner needs the connection for its lock.
SQL_HOMES = {"search.store", "search.migrate"}


def test_the_store_holds_all_sql():
    """The store owns every query: the engine, the indexer and the web UI ask it by name and
    build no statement (``pixseek doctor`` may open a read-only engine to test a database)."""
    offenders = []
    for module, path in MODULES.items():
        if module.split(".")[0] not in ("search", "indexer", "webui") or module in SQL_HOMES:
            continue
        tree = ast.parse(path.read_text(), str(path))
        skip = _type_checking_only(tree)  # a type's name only
        for node in ast.walk(tree):
            names = []
            if id(node) in skip:
                continue
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{module}: {n}" for n in names if n.split(".")[0] == "sqlalchemy"]
    assert not offenders, offenders
