"""What every handler of the eManageCRM sandbox shares: config, database, clock and faults.

The clock and the faults live in memory: they are test knobs (``/_sandbox/clock``,
``/_sandbox/faults``) and a restarted sandbox starts without them.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from syncapp.sandbox.emanage.config import EmanageSandboxConfig
from syncapp.sandbox.emanage.db import EmanageDB


class Clock:
    """Wall-clock time plus an offset tests can advance (to expire tokens and links)."""

    def __init__(self) -> None:
        self._offset = 0.0
        self._lock = threading.Lock()

    def now(self) -> float:
        return time.time() + self._offset

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._offset += seconds

    @property
    def offset(self) -> float:
        return self._offset


@dataclass
class Faults:
    """Injected failures: the next ``fail_next`` requests get ``status``; until ``down_until``
    every request gets 503; every request waits ``latency`` seconds before it is answered."""

    fail_next: int = 0
    status: int = 503
    retry_after: float | None = None
    down_until: float = 0.0
    latency: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def snapshot(self, now: float) -> dict[str, Any]:
        return {
            "failNext": self.fail_next,
            "status": self.status,
            "retryAfter": self.retry_after,
            "downForSeconds": max(0.0, round(self.down_until - now, 3)),
            "latencySeconds": self.latency,
        }


@dataclass
class EmanageState:
    """The sandbox's shared state, built once by ``create_app``."""

    config: EmanageSandboxConfig
    db: EmanageDB
    clock: Clock = field(default_factory=Clock)
    faults: Faults = field(default_factory=Faults)

    @property
    def public_url(self) -> str:
        return self.config.public_url.rstrip("/")


def digest(secret: str) -> str:
    """How bearer tokens, link codes, SSO tokens and session ids are stored: never in clear."""
    return hashlib.sha256(secret.encode()).hexdigest()


def iso(ts: float) -> str:
    """A stored epoch time as the API's ISO 8601 UTC timestamp."""
    return datetime.fromtimestamp(ts, UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
