"""What every CTRwow sandbox handler is given: configuration, database, the sandbox clock and
the faults tests asked for.

The clock is real time plus an offset that ``/_sandbox/clock`` can advance, so tests see a
token expire or a grace window close without waiting. Faults are in memory: a restarted
sandbox is healthy.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field

from syncapp.sandbox.ctrwow.config import CtrwowSandboxConfig
from syncapp.sandbox.ctrwow.db import SandboxDB


@dataclass
class Faults:
    """Failures to inject: the next ``fail_next`` requests, or all until ``down_until``;
    ``latency`` seconds before every API answer (a slow CTRwow)."""

    fail_next: int = 0
    status: int = 503
    down_until: float = 0.0  # time.monotonic()
    retry_after: int = 1
    latency: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def take(self) -> int | None:
        """The status to fail the current request with, or None to serve it."""
        with self._lock:
            if time.monotonic() < self.down_until:
                return 503
            if self.fail_next > 0:
                self.fail_next -= 1
                return self.status
            return None

    def set(
        self,
        *,
        fail_next: int,
        status: int,
        down_for: float,
        retry_after: int,
        latency: float = 0.0,
    ) -> None:
        with self._lock:
            self.latency = max(0.0, latency)
            self.fail_next = fail_next
            self.status = status
            self.down_until = time.monotonic() + down_for if down_for > 0 else 0.0
            self.retry_after = retry_after

    def snapshot(self) -> dict[str, float | int]:
        with self._lock:
            return {
                "fail_next": self.fail_next,
                "status": self.status,
                "down_for": max(0.0, self.down_until - time.monotonic()),
                "retry_after": self.retry_after,
                "latency": self.latency,
            }


@dataclass
class SandboxState:
    config: CtrwowSandboxConfig
    db: SandboxDB
    faults: Faults = field(default_factory=Faults)
    clock_offset: float = 0.0
    # Signs the consent forms; kept in the database so an open page survives a restart.
    form_secret: str = ""

    def __post_init__(self) -> None:
        if not self.form_secret:
            self.form_secret = self.db.meta("form_secret", secrets.token_hex(32))

    def now(self) -> float:
        """The sandbox's current unix time."""
        return time.time() + self.clock_offset
