"""A consumer SIGKILLed at random points, then restarted, leaves every event processed and
every handler effect applied exactly once (the effects are counted, not assumed), on each
back-end: embedded on SQLite and PostgreSQL, and RabbitMQ (whose consumer process also runs the
relay, so kills land in the middle of publishing too).

10,000 events in CI (``CI=true``); ``SYNCAPP_CRASH_EVENTS`` sets the count elsewhere (2,000 by
default, to spare the shared development machine)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from syncapp.bus.models import BusReceipt, InboundEvent
from tests.integration.bus.conftest import Medium
from tests.integration.bus.faults import private_vhost
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[3]
EVENTS = int(
    os.environ.get(
        "SYNCAPP_CRASH_EVENTS", "10000" if os.environ.get("CI", "").lower() == "true" else "2000"
    )
)
KILLS = 5
# Each drains 10,000 events through killed consumers, CPU-bound: under `make test` (pytest-xdist,
# --dist loadgroup) they run one after another on one worker, beside the waiting tests rather
# than beside each other; minutes each on a loaded machine.
pytestmark = [pytest.mark.xdist_group("bus-crash"), pytest.mark.timeout(900)]


def _consumer(medium: Medium, amqp: str | None) -> subprocess.Popen[str]:
    """A consumer process, not measured by coverage: SIGKILLed, it saves no data anyway (all
    but the last), and tracing its drain of every event cost as much again in CPU, which the
    other tests of `make test` (parallel, on two cores) need. The same consumer is measured
    where it is stopped with SIGTERM (``test_shutdown.py``)."""
    url = medium.engine.url.render_as_string(hide_password=False)
    args = [sys.executable, "-m", "tests.integration.bus.consumer_process", url, "0", "effects"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("COVERAGE_")}
    return subprocess.Popen(
        [*args, *([amqp] if amqp else [])], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, text=True
    )


def _effects(medium: Medium) -> int:
    with medium.engine.connect() as conn:
        return int(conn.scalar(text("SELECT count(*) FROM effects")) or 0)


def _wait(condition: Callable[[], bool], process: subprocess.Popen[str], timeout: float) -> None:
    """Until ``condition()``, while ``process`` runs; fail after ``timeout`` seconds."""

    def reached() -> bool:
        assert process.poll() is None, f"the consumer exited ({process.returncode})"
        return condition()

    wait_until(reached, timeout=timeout, what=f"the consumer's progress (pid {process.pid})")


def _drain(medium: Medium, process: subprocess.Popen[str], *, stalled_after: float = 60) -> None:
    """Until every event's effect is there, while ``process`` runs and makes progress: fail
    when no new effect comes for ``stalled_after`` seconds. A consumer that stops draining
    fails as before; one that drains slowly on a loaded machine (`make test` runs four workers
    on two cores) is not failed by a deadline for the whole drain."""
    done = _effects(medium)
    while done < EVENTS:
        _wait(lambda before=done: _effects(medium) > before, process, timeout=stalled_after)
        done = _effects(medium)


def _crash_and_recover(medium: Medium, amqp: str | None = None) -> None:
    """``KILLS`` SIGKILLs while ``EVENTS`` events drain (batches in flight, commits half done),
    then a consumer that runs to the end: every effect once."""
    with medium.engine.begin() as conn:
        conn.execute(text("CREATE TABLE effects (event_id INTEGER NOT NULL)"))
    for start in range(0, EVENTS, 1000):
        keys = [f"Product/{n}" for n in range(start, min(start + 1000, EVENTS))]
        medium.add("a.myshopify.com", keys)
    rng = random.Random(8)
    for _ in range(KILLS):
        process = _consumer(medium, amqp)
        before = _effects(medium)
        try:
            # Kill once it has made some progress, at a random moment after that.
            _wait(lambda: _effects(medium) > before, process, timeout=60)  # noqa: B023
            time.sleep(rng.uniform(0.0, 0.3))
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
    assert _effects(medium) < EVENTS, "the kills all came too late to interrupt anything"
    process = _consumer(medium, amqp)
    try:
        _drain(medium, process)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
    with medium.engine.connect() as conn:
        twice = conn.execute(
            text("SELECT event_id, count(*) FROM effects GROUP BY event_id HAVING count(*) > 1")
        ).all()
        effects = conn.scalar(text("SELECT count(DISTINCT event_id) FROM effects"))
        settled = conn.scalar(
            select(func.count())
            .select_from(InboundEvent)
            .where(InboundEvent.status == "done")  # with a broker: settled, written back
        )
        receipts = conn.scalar(select(func.count()).select_from(BusReceipt))
    assert twice == []
    assert effects == EVENTS
    assert settled == EVENTS
    if amqp:
        assert receipts == EVENTS


def test_sigkill_at_random_points_loses_nothing_and_applies_each_effect_once(
    embedded_medium: Medium,
) -> None:
    """Embedded back-end (SQLite, PostgreSQL)."""
    _crash_and_recover(embedded_medium)


@pytest.fixture
def vhost() -> Iterator[str]:
    with private_vhost() as name:
        yield name


def test_sigkill_at_random_points_on_rabbitmq_loses_nothing_and_applies_each_effect_once(
    embedded_medium: Medium, vhost: str
) -> None:
    """RabbitMQ back-end (the outbox in SQLite or PostgreSQL), in a virtual host of its own."""
    _crash_and_recover(embedded_medium, f"amqp://guest:guest@127.0.0.1:5672/{vhost}")
