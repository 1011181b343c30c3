"""A served web process freezes its startup heap; a test-built app does not.

Full garbage collections over the startup heap stopped the event loop for about 50 ms and set
the webhook ingest p99 (docs/adr/0006-freeze-startup-heap.md).
"""

from __future__ import annotations

import gc
import subprocess
import sys
from pathlib import Path

from syncapp.web.app import create_app
from tests.conftest import CLIENT_SECRET, make_settings
from tests.subprocesses import child_env

SERVED = """
import gc, weakref
from syncapp.web.app import app_from_env

app = app_from_env()
frozen = gc.get_freeze_count()

class Node:
    pass

# A cycle made after start-up is still garbage the collector finds.
node = Node()
node.me = node
ref = weakref.ref(node)
del node
gc.collect()
print(frozen, ref() is None)
"""


def test_the_uvicorn_factory_freezes_the_startup_heap(tmp_path: Path) -> None:
    env = child_env(
        {
            "SYNCAPP_DATA_DIR": str(tmp_path),
            "SYNCAPP_DATABASE_URL": f"sqlite:///{tmp_path / 'syncapp.db'}",
            "SYNCAPP_SHOPIFY_CLIENT_SECRET": CLIENT_SECRET,
            "SYNCAPP_LOG_LEVEL": "warning",
        }
    )
    out = subprocess.run(
        [sys.executable, "-c", SERVED], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    frozen, cycle_collected = out.stdout.split()
    assert int(frozen) > 20_000  # modules, metadata, routes: the whole startup heap
    assert cycle_collected == "True"


def test_create_app_leaves_the_collector_alone(tmp_path: Path) -> None:
    before = gc.get_freeze_count()
    create_app(make_settings(tmp_path))
    assert gc.get_freeze_count() == before
