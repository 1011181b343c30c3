"""The sync's pure core does no I/O: its modules import nothing that talks to the network,
a database, the bus or the clock of a process."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[3] / "src" / "syncapp"
PURE = [
    SRC / "sync" / "catalog.py",
    SRC / "sync" / "mapping.py",
    SRC / "sync" / "fingerprint.py",
    SRC / "sync" / "merge.py",
    SRC / "sync" / "plan.py",
    SRC / "sync" / "links.py",
    SRC / "connectors" / "shopify" / "budget.py",
]
ALLOWED = {
    "__future__",
    "collections",
    "dataclasses",
    "datetime",
    "decimal",
    "enum",
    "hashlib",
    "itertools",
    "math",
    "typing",
    "orjson",
    "syncapp.errors",
    "syncapp.sync.catalog",
    "syncapp.sync.fingerprint",
    "syncapp.sync.merge",
    "syncapp.sync.plan",
}


@pytest.mark.parametrize("path", PURE, ids=lambda p: p.name)
def test_pure_module_imports_no_io(path: Path) -> None:
    """Only the standard library's data modules, orjson and other pure modules are imported."""
    imported: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            imported |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
    roots = {m if m.startswith("syncapp") else m.split(".")[0] for m in imported}
    assert roots <= ALLOWED, f"{path.name} imports {sorted(roots - ALLOWED)}"
