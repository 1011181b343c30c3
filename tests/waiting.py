"""Waiting on a condition with a deadline, instead of sleeping and hoping, and the conditions
that say a thread or process is blocked on a lock."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

# Asked again after 5 ms, then less and less often, at most every 50 ms: a condition that holds
# soon is seen soon, and a long wait does not spend the CPU the code under test needs (a check
# under coverage costs milliseconds, and `make test` runs four workers on two cores).
FIRST_PAUSE = 0.005
LONGEST_PAUSE = 0.05


def pauses() -> Callable[[], float]:
    """The next pause of a polling loop each time it is called: 5 ms, growing to 50 ms."""
    pause = FIRST_PAUSE / 1.5

    def following() -> float:
        nonlocal pause
        pause = min(pause * 1.5, LONGEST_PAUSE)
        return pause

    return following


def wait_until(condition: Callable[[], object], *, timeout: float = 10.0, what: str = "") -> None:
    """Return as soon as ``condition()`` is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    pause = pauses()
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what or condition}")
        time.sleep(pause())


def flock_waiters(path: Path) -> int:
    """How many ``flock`` requests on ``path`` are blocked (Linux ``/proc/locks``, ``->``)."""
    st = path.stat()
    key = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    lines = Path("/proc/locks").read_text().splitlines()
    return sum(1 for line in lines if "->" in line.split() and key in line.split())
