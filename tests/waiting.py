"""Waiting on a condition with a deadline, instead of sleeping and hoping, and the conditions
that say a thread or process is blocked on a lock."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path


def wait_until(condition: Callable[[], object], *, timeout: float = 10.0, what: str = "") -> None:
    """Return as soon as ``condition()`` is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what or condition}")
        time.sleep(0.005)


def flock_waiters(path: Path) -> int:
    """How many ``flock`` requests on ``path`` are blocked (Linux ``/proc/locks``, ``->``)."""
    st = path.stat()
    key = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    lines = Path("/proc/locks").read_text().splitlines()
    return sum(1 for line in lines if "->" in line.split() and key in line.split())
