"""The suite does not depend on its environment: a representative part of it — every test that
starts the system's processes, reads settings or spawns a child — passes in a child pytest with
every ``SYNCAPP_*`` setting set to a hostile value and ports 8000-8300 (the defaults of the app
and the sandboxes) held by other listeners, and writes nothing where those variables point.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from syncapp.config import ENV_PREFIX, Settings
from tests.conftest import POSTGRES_URL

# Whole systems in child processes: two groups, so `make test` (pytest-xdist, --dist
# loadgroup) runs at most two of them at once on two cores; minutes each under that load.
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e-a"), pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]
SUBSET = (
    "tests/e2e/test_make_run.py",
    "tests/integration/test_webhook_ingest.py",
    "tests/integration/test_served_process.py",
    "tests/integration/shops/test_tokens.py",
    "tests/integration/onboarding/test_crash_and_tokens.py",
    "tests/integration/sandbox/test_webhooks.py",
    "tests/integration/app_home/test_usage_charges.py",
    "tests/unit/test_config.py",
    "tests/unit/onboarding/test_settings.py",
)
TAKEN_PORTS = range(8000, 8301)
# What the rest of the suite writes into the checkout's root by design, gitignored: coverage's
# data files, Hypothesis's example database, pytest's and Schemathesis's caches, the browser
# tests' screenshots. Under pytest-xdist (`make test`) those tests run in other workers while
# this one runs, so these may appear meanwhile without the child pytest having written them.
SUITE_ARTIFACTS = (".coverage", ".hypothesis", ".pytest_cache", ".schemathesis", "test-artifacts")


def hostile_environment(trap: Path) -> dict[str, str]:
    """A value for every setting (derived from the model, so a new one is covered too): wrong
    but valid where a leak would quietly change what a test checks, invalid elsewhere."""
    wrong = {
        "env": "production",
        "sandbox": "false",
        "data_dir": str(trap / "data"),
        "database_url": f"sqlite:///{trap / 'data' / 'hostile.db'}",
        "secret_key": "not-a-fernet-key",
        "host": "192.0.2.1",
        "port": "8000",
        "public_url": "http://hostile.invalid",
        "web_workers": "0",
        "log_level": "loud",
        "shopify_base_url": "http://127.0.0.1:8100",
        "shopify_admin_url": "http://127.0.0.1:8100",
        "shopify_app_toml": str(trap / "missing.toml"),
        "sandbox_shopify_port": "8100",
        "sandbox_emanage_port": "8200",
        "sandbox_ctrwow_port": "8300",
        "emanage_base_url": "http://127.0.0.1:8200",
        "ctrwow_base_url": "http://127.0.0.1:8300",
        "ctrwow_redirect_uri": "http://hostile.invalid/callback",
        "billing_plans": "[not json",
    }
    env = {f"{ENV_PREFIX}{name.upper()}": f"hostile-{name}" for name in Settings.model_fields}
    env.update({f"{ENV_PREFIX}{name.upper()}": value for name, value in wrong.items()})
    return env


@contextlib.contextmanager
def listeners_on(ports: range) -> Iterator[None]:
    """Listen on each of ``ports`` on 127.0.0.1 (one already in use is taken anyway)."""
    sockets: list[socket.socket] = []
    try:
        for port in ports:
            sock = socket.socket()
            try:
                sock.bind(("127.0.0.1", port))
            except OSError as exc:
                sock.close()
                if exc.errno != errno.EADDRINUSE:
                    raise
                continue
            sock.listen()
            sockets.append(sock)
        yield
    finally:
        for sock in sockets:
            sock.close()


def test_the_suite_ignores_a_hostile_environment_and_taken_default_ports(tmp_path: Path) -> None:
    trap = tmp_path / "trap"
    env = {
        **os.environ,
        **hostile_environment(trap),
        "SYNCAPP_TEST_POSTGRES_URL": POSTGRES_URL,
    }
    root_before = {p.name for p in REPO.iterdir()}
    # A port some other process already holds is taken all the same (on a shared machine that
    # may be another run of this very test).
    with listeners_on(TAKEN_PORTS):
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                f"--basetemp={tmp_path / 'inner'}",
                *SUBSET,
            ],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
    assert not trap.exists(), sorted(str(p) for p in trap.rglob("*"))
    stray = {p.name for p in REPO.iterdir()} - root_before
    assert {name for name in stray if not name.startswith(SUITE_ARTIFACTS)} == set()
