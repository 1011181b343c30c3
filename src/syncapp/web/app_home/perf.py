"""What the App Home reports about its own speed: the ``Server-Timing`` header of each answer
(database, eManageCRM, render), and the web vitals the merchant's browser measured (App
Bridge's ``shopify.webVitals.onReport``), checked and kept as Prometheus histograms."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import anyio
from prometheus_client import Histogram

T = TypeVar("T")

WEB_VITAL_SECONDS = Histogram(
    "syncapp_app_home_web_vital_seconds",
    "Web vitals of the App Home as merchants' browsers measured them (LCP, INP, FCP, TTFB).",
    ["metric"],
    buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 1.2, 1.8, 2.5, 4, 6, 10),
)
WEB_VITAL_CLS = Histogram(
    "syncapp_app_home_cls",
    "Cumulative layout shift of the App Home as merchants' browsers measured it.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1),
)
# Millisecond metrics and the largest value believed (a longer one is a broken clock).
_TIMED = {"LCP": 120_000.0, "INP": 60_000.0, "FCP": 120_000.0, "TTFB": 120_000.0}
MAX_METRICS = 10


class ServerTiming:
    """Time spent per part of one answer, as a ``Server-Timing`` header value."""

    def __init__(self) -> None:
        self._parts: dict[str, float] = {}
        self._notes: dict[str, str] = {}

    @contextmanager
    def measure(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            elapsed = (time.perf_counter() - start) * 1000
            self._parts[name] = self._parts.get(name, 0.0) + elapsed

    async def in_thread(self, name: str, work: Callable[[], T]) -> T:
        """``work()`` in a worker thread (database calls), its time counted as ``name``."""
        with self.measure(name):
            return await anyio.to_thread.run_sync(work)

    def note(self, name: str, description: str) -> None:
        """A part without a duration (``emanage;desc="cached"``)."""
        self._notes[name] = description

    def header(self) -> str:
        parts = [f"{name};dur={ms:.1f}" for name, ms in self._parts.items()]
        parts += [f'{name};desc="{desc}"' for name, desc in self._notes.items()]
        return ", ".join(parts)

    def headers(self, base: dict[str, str] | None = None) -> dict[str, str]:
        return {**(base or {}), "Server-Timing": self.header()}


class BadReport(ValueError):
    """A web vitals report that is not one App Bridge sends; nothing of it is recorded."""


def parse_web_vitals(body: Any) -> list[tuple[str, float]]:
    """The ``(name, value)`` pairs of an App Bridge web vitals report: a ``WebVitalsReport``
    (``{"metrics": [{id, name, value}, ...], ...}``) or one ``{id, name, value}`` metric.
    Raises BadReport for anything else: unknown names, values that are not finite numbers or
    out of range, more than MAX_METRICS metrics."""
    if isinstance(body, dict) and "metrics" in body:
        metrics = body["metrics"]
    elif isinstance(body, dict):
        metrics = [body]
    else:
        raise BadReport("send a JSON object: a web vitals report or one metric")
    if not isinstance(metrics, list) or not metrics or len(metrics) > MAX_METRICS:
        raise BadReport(f"metrics must be a list of 1 to {MAX_METRICS} metrics")
    out = []
    for metric in metrics:
        if not isinstance(metric, dict):
            raise BadReport("each metric is an object {id, name, value}")
        name, value = metric.get("name"), metric.get("value")
        if not isinstance(name, str) or name.upper() not in (*_TIMED, "CLS"):
            raise BadReport(f"unknown metric {name!r}; expected LCP, INP, CLS, FCP or TTFB")
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise BadReport(f"{name}: the value must be a number")
        name = name.upper()
        limit = _TIMED.get(name, 100.0)
        if not 0 <= value <= limit:
            raise BadReport(f"{name}: {value} is out of range (0 to {limit:g})")
        out.append((name, float(value)))
    return out


def record_web_vitals(metrics: list[tuple[str, float]]) -> None:
    for name, value in metrics:
        if name == "CLS":
            WEB_VITAL_CLS.observe(value)
        else:
            WEB_VITAL_SECONDS.labels(name).observe(value / 1000)
