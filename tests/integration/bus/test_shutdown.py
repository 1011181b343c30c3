"""SIGTERM: a consumer finishes or hands back what it holds, and exits within 10 s."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import select

from syncapp.bus.models import InboundEvent
from tests.integration.bus.conftest import Medium

ROOT = Path(__file__).resolve().parents[3]


def _start(medium: Medium, seconds: float) -> subprocess.Popen[str]:
    url = medium.engine.url.render_as_string(hide_password=False)
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.integration.bus.consumer_process", url, str(seconds)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    # Blocks until the handler holds a claim (or the process died: end of output).
    for line in process.stdout:
        if line.startswith("ready"):
            return process
    process.kill()  # never leave it running
    raise AssertionError(f"the consumer exited with {process.wait()} before claiming")


def _statuses(medium: Medium) -> list[tuple[str, int]]:
    with medium.engine.connect() as conn:
        rows = conn.execute(
            select(InboundEvent.status, InboundEvent.attempts).order_by(InboundEvent.id)
        ).all()
    return [(r[0], r[1]) for r in rows]


def test_sigterm_hands_back_a_claim_whose_handler_does_not_finish(embedded_medium: Medium) -> None:
    """A handler that would take a minute: SIGTERM, exit within 10 s, the event due again
    with its attempt uncounted."""
    medium = embedded_medium
    medium.add("a.myshopify.com", ["k"])
    process = _start(medium, 60.0)
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=10)
    assert time.monotonic() - started < 10
    assert process.returncode == 0
    assert "stopped" in out
    assert _statuses(medium) == [("pending", 0)]


def test_sigterm_lets_a_short_handler_finish_and_settles_it(embedded_medium: Medium) -> None:
    """A handler that ends within the grace period is settled before the process exits."""
    medium = embedded_medium
    medium.add("a.myshopify.com", ["k"])
    process = _start(medium, 0.5)
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=10)
    assert process.returncode == 0
    assert _statuses(medium) == [("done", 1)]
