"""The shape of the code: which package may import which, and where SQL lives."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) of every import in a file, function-level ones included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.extend((alias.name, []) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, [alias.name for alias in node.names]))
    return found


def test_indexer_holds_no_sql():
    """The store owns every query: the indexer asks it by name and builds no statement."""
    offenders = [
        f"{path.relative_to(ROOT)}: {module}"
        for path in sorted((ROOT / "indexer").rglob("*.py"))
        for module, _ in _imports(path)
        if module == "sqlalchemy" or module.startswith("sqlalchemy.")
    ]
    assert not offenders, offenders
