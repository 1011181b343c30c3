"""The one retry policy of the app: exponential backoff with "equal jitter", honouring a
server's ``Retry-After``, up to a budget of attempts after which an event is a dead letter.

Retries are durable: a failed event goes back to its queue with a not-before time (a row's
``next_attempt_at``, a broker's delayed redelivery), so no process sleeps on it and a crash
loses no retry. That is why the app uses no in-process retry library (stamina was removed,
docs/adr/0014): it would sleep inside a claim, holding the lease and a consumer slot.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how soon to try again (``SYNCAPP_WORKER_*``)."""

    max_attempts: int = 8
    base_seconds: float = 2.0
    cap_seconds: float = 900.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.base_seconds < 0 or self.cap_seconds < self.base_seconds:
            raise ValueError("need 0 <= base_seconds <= cap_seconds")

    def exhausted(self, attempts: int) -> bool:
        """Whether an event that failed its ``attempts``-th attempt is a dead letter now."""
        return attempts >= self.max_attempts


def backoff_delay(
    attempt: int, *, policy: RetryPolicy, jitter: float, retry_after: float | None = None
) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1 for the first failure).

    "Equal jitter": half of the exponential step is kept, the other half is scaled by
    ``jitter`` in [0, 1), so retries of many events spread out but never come back at once. A
    server's ``retry_after`` is a floor, since retrying before it only fails again.
    """
    if attempt < 1:
        raise ValueError("attempt counts from 1")
    if not 0.0 <= jitter < 1.0:
        raise ValueError("jitter must be in [0, 1)")
    # Clamp the exponent: 2**63 s is already past any cap, and larger powers overflow floats.
    ceiling = min(policy.cap_seconds, policy.base_seconds * 2.0 ** min(attempt - 1, 63))
    delay = ceiling / 2 + ceiling / 2 * jitter
    if retry_after is not None and retry_after > delay:
        delay = retry_after
    return delay
