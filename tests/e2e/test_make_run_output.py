"""What `make run` prints when its output is not a terminal (a pipe, a log file, CI): every
line whole, not wrapped at 80 columns, and the Admin GraphQL curl example exactly as the
README gives it (``$(make -s token)``), so that copying it from the log and running it in the
checkout answers with the demo shop."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest

# Whole systems in child processes: two groups, so `make test` (pytest-xdist, --dist
# loadgroup) runs at most two of them at once on two cores; minutes each under that load.
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e-a"), pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_make_run_prints_whole_lines_and_the_readme_curl_that_works(tmp_path: Path) -> None:
    ports = {name: free_port() for name in ("app", "shopify", "emanage", "ctrwow")}
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SYNCAPP_")},
        "SYNCAPP_DATA_DIR": str(tmp_path / "var"),
        "SYNCAPP_PORT": str(ports["app"]),
        "SYNCAPP_SANDBOX_SHOPIFY_PORT": str(ports["shopify"]),
        "SYNCAPP_SANDBOX_EMANAGE_PORT": str(ports["emanage"]),
        "SYNCAPP_SANDBOX_CTRWOW_PORT": str(ports["ctrwow"]),
        "SYNCAPP_WEB_WORKERS": "1",
        "SYNCAPP_LOG_LEVEL": "warning",
    }
    env.pop("COLUMNS", None)
    log_path = tmp_path / "make-run.log"
    with log_path.open("wb") as log:
        # Its own process group: Ctrl-C goes to make and everything it started, as in a shell.
        make = subprocess.Popen(
            ["make", "run"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 120
        while "Admin GraphQL" not in log_path.read_text():
            assert make.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, "no URLs printed in 120 s:\n" + log_path.read_text()
            time.sleep(0.25)
        output = log_path.read_text()
        [line] = [x for x in output.splitlines() if "Admin GraphQL" in x]
        command = line.split("Admin GraphQL", 1)[1].strip()
        assert command.startswith("curl "), output
        assert command.endswith("/graphql.json"), output
        assert '"X-Shopify-Access-Token: $(make -s token)"' in command
        assert f"http://127.0.0.1:{ports['shopify']}/admin/api/" in command
        assert "$(make token)" not in output
        admin_line = next(x for x in output.splitlines() if "Shopify admin" in x)
        assert re.search(r"http://127\.0\.0\.1:\d+/store/demo/apps/sync-app$", admin_line), output

        # The README's example, run as printed from the checkout, reaches the sandbox.
        assert httpx.get(f"http://127.0.0.1:{ports['shopify']}/healthz", timeout=5).is_success
        ran = subprocess.run(
            ["bash", "-c", command],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=180,  # `make -s token` starts the CLI: slow beside `make test`'s workers
            check=False,
        )
        assert ran.returncode == 0, ran.stderr
        assert '"shop":{"name":' in ran.stdout.replace(" ", ""), ran.stdout
    finally:
        os.killpg(make.pid, signal.SIGINT)
        try:
            make.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(make.pid, signal.SIGKILL)
            make.wait()
