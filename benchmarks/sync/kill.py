"""Fault run: ``syncapp worker`` SIGKILLed at random points during N product changes flowing both
ways, restarted each time; prints lost and duplicated changes and the time taken, per bus
back-end. The scenario is the one ``tests/integration/sync/test_worker_kill.py`` runs at a small
scale (:mod:`tests.integration.sync.kill_scenario`: what is counted, and how).

    .venv/bin/python -m benchmarks.sync.kill [--changes 10000] [--products 200] [--kills 20]
        [--bus embedded rabbitmq] [--seed N]

Run from the repository root (it imports the harness from ``tests``); RabbitMQ on localhost
(a virtual host of its own is made and deleted, as the tests do). Results go to stderr with a
``==`` prefix (the in-process app's logs share stdout). Exit status 1 when anything was lost
or duplicated.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tests.integration.bus.faults import private_vhost
from tests.integration.sync.engine_world import sync_world
from tests.integration.sync.kill_scenario import Report, Scenario, run_scenario


def out(*parts: object) -> None:
    print("==", *parts, file=sys.stderr, flush=True)


@contextlib.contextmanager
def bus_url(bus: str) -> Iterator[str]:
    if bus == "embedded":
        yield ""
        return
    with private_vhost() as vhost:
        yield f"amqp://guest:guest@127.0.0.1:5672/{vhost}"


async def one(bus: str, scenario: Scenario, keep: bool) -> Report:
    tmp = Path(tempfile.mkdtemp(prefix=f"syncapp-kill-{bus}-"))
    started = time.monotonic()

    def progress(applied: int, total: int, kills: int) -> None:
        out(
            f"{bus}: {applied}/{total} changes applied, {kills} kills, "
            f"{time.monotonic() - started:.0f} s"
        )

    with bus_url(bus) as url:
        async with sync_world(
            tmp, f"kill-{bus}-{scenario.seed}", deliver=True, plan_name="Plus"
        ) as world:
            report = await run_scenario(
                world, scenario, bus_url=url, log=tmp / "worker.log", progress=progress
            )
    out("result", report.line())
    out(
        f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} "
        f"{os.getloadavg()[2]:.2f}; merchant edits THROTTLED {report.merchant_throttled}"
    )
    for line in [
        *report.mismatched,
        *report.late,
        *report.duplicates,
        *report.version_mismatches,
        *report.unattributed,
    ][:30]:
        out("  ", line)
    out("data in", tmp if keep or not report.clean else "(deleted)")
    if not keep and report.clean:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return report


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=10_000)
    parser.add_argument("--products", type=int, default=200)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument(
        "--bus", nargs="+", choices=("embedded", "rabbitmq"), default=["embedded", "rabbitmq"]
    )
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--change-timeout", type=float, default=120.0)
    parser.add_argument("--keep", action="store_true", help="keep the data directory")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 1_000_000)
    scenario = Scenario(
        changes=args.changes,
        products=args.products,
        kills=args.kills,
        seed=seed,
        change_timeout=args.change_timeout,
    )
    out(
        f"{scenario.per_product * scenario.products} changes over {scenario.products} products "
        f"(half edited in Shopify, half in eManageCRM), {scenario.kills} SIGKILLs, seed {seed}"
    )
    failed = False
    for bus in args.bus:
        report = await one(bus, scenario, args.keep)
        failed = failed or not report.clean or bool(report.mismatched)
    return 1 if failed else 0


if __name__ == "__main__":
    # SIGTERM as Ctrl-C: the worker process is stopped and the virtual host deleted.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    sys.exit(asyncio.run(main()))
