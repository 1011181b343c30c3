"""Prometheus metrics of the bus (served on the app's ``/metrics``; ``syncapp bus status``
reads the same numbers from the database)."""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from sqlalchemy.orm import Session, sessionmaker

SETTLED = Counter(
    "syncapp_bus_settled_total",
    "Events settled by consumers, by topic and result (done, retry, dead, lost).",
    ["topic", "result"],
)
HANDLER_SECONDS = Histogram(
    "syncapp_bus_handler_seconds",
    "Time a handler took for one event.",
    ["topic"],
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30),
)
RELAYED = Counter("syncapp_bus_relayed_total", "Events the relay handed to the broker.")


def state_metrics(sessions: sessionmaker[Session]) -> bytes:
    """Depth, oldest pending age, in flight and dead letters per topic, read from the database
    at scrape time (facts of the rows, the same for every process), in Prometheus text."""
    from syncapp.bus.operators import status

    registry = CollectorRegistry()
    depth = Gauge("syncapp_bus_depth", "Events pending, by topic.", ["topic"], registry=registry)
    age = Gauge(
        "syncapp_bus_oldest_pending_seconds",
        "Age of the oldest pending event, by topic.",
        ["topic"],
        registry=registry,
    )
    in_flight = Gauge(
        "syncapp_bus_in_flight",
        "Events claimed, not settled, by topic.",
        ["topic"],
        registry=registry,
    )
    dead = Gauge(
        "syncapp_bus_dead_letters", "Dead letters, by topic.", ["topic"], registry=registry
    )
    now = datetime.now(UTC)
    for row in status(sessions):
        depth.labels(row.topic).set(row.pending)
        in_flight.labels(row.topic).set(row.in_flight)
        dead.labels(row.topic).set(row.dead)
        oldest = row.oldest_age(now)
        age.labels(row.topic).set(oldest or 0.0)
    return generate_latest(registry)
