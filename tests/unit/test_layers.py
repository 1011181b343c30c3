"""``store/`` is the bottom layer: it imports no domain and not the bus, so every domain can
use it and the complete schema is assembled above it (:mod:`syncapp.schema`)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import syncapp.store
from tests.subprocesses import child_env

STORE = Path(syncapp.store.__file__).parent
# What store/ may use of the app besides itself: the error base.
ALLOWED = ("syncapp.store", "syncapp.errors")


def _allowed(module: str) -> bool:
    return module == "syncapp" or module.startswith(ALLOWED)


def test_no_module_of_store_names_another_part_of_the_app() -> None:
    """Every file under store/ (the migrations' env and revisions included, which Alembic runs
    as scripts rather than imports) imports only store/ and the error base."""
    offending = []
    for path in sorted(STORE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            offending += [
                f"{path.relative_to(STORE)}: {name}"
                for name in names
                if name.startswith("syncapp") and not _allowed(name)
            ]
    assert offending == []


def test_importing_all_of_store_loads_nothing_above_it() -> None:
    """Transitively too: a fresh interpreter that imports every module of store/ has loaded no
    domain, no bus, no web module."""
    program = (
        "import importlib, pkgutil, sys, syncapp.store as s\n"
        "for m in pkgutil.walk_packages(s.__path__, 'syncapp.store.'):\n"
        "    if '.migrations' not in m.name:\n"
        "        importlib.import_module(m.name)\n"
        "print('\\n'.join(sorted(k for k in sys.modules if k.startswith('syncapp'))))\n"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", program],
        env=child_env(),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.split()
    assert "syncapp.store.models" in loaded
    assert [m for m in loaded if not _allowed(m)] == []
