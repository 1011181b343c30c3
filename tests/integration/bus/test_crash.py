"""A consumer SIGKILLed at random points, then restarted, leaves every event processed and
every handler effect applied exactly once (the effects are counted, not assumed)."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import func, select, text

from syncapp.bus.models import InboundEvent
from tests.integration.bus.conftest import Medium

ROOT = Path(__file__).resolve().parents[3]
EVENTS = 2_000


def _consumer(medium: Medium) -> subprocess.Popen[str]:
    url = medium.engine.url.render_as_string(hide_password=False)
    return subprocess.Popen(
        [sys.executable, "-m", "tests.integration.bus.consumer_process", url, "0", "effects"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        text=True,
    )


def _done(medium: Medium) -> int:
    with medium.engine.connect() as conn:
        return int(
            conn.scalar(
                select(func.count()).select_from(InboundEvent).where(InboundEvent.status == "done")
            )
            or 0
        )


def test_sigkill_at_random_points_loses_nothing_and_applies_each_effect_once(
    embedded_medium: Medium,
) -> None:
    """Five SIGKILLs while 2,000 events drain (batches in flight, commits half done), then a
    consumer that runs to the end: 2,000 done, 2,000 effects, none twice."""
    medium = embedded_medium
    with medium.engine.begin() as conn:
        conn.execute(text("CREATE TABLE effects (event_id INTEGER NOT NULL)"))
    for start in range(0, EVENTS, 500):
        medium.add("a.myshopify.com", [f"Product/{n}" for n in range(start, start + 500)])
    rng = random.Random(8)
    for _ in range(5):
        process = _consumer(medium)
        before = _done(medium)
        deadline = time.monotonic() + 60
        # Kill once it has made some progress, at a random moment after that.
        while _done(medium) == before and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.2))
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    process = _consumer(medium)
    try:
        deadline = time.monotonic() + 120
        while _done(medium) < EVENTS:
            assert time.monotonic() < deadline, f"only {_done(medium)} of {EVENTS} done"
            assert process.poll() is None, "the consumer exited"
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
    with medium.engine.connect() as conn:
        counts = conn.execute(
            text("SELECT event_id, count(*) FROM effects GROUP BY event_id HAVING count(*) > 1")
        ).all()
        effects = conn.scalar(text("SELECT count(*) FROM effects"))
    assert counts == []
    assert effects == EVENTS
