"""Prometheus metrics of the bus (served on the app's ``/metrics``; ``syncapp bus status``
reads the same numbers from the database)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

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
DEPTH = Gauge("syncapp_bus_depth", "Events waiting (pending), by topic.", ["topic"])
OLDEST_AGE = Gauge(
    "syncapp_bus_oldest_pending_seconds", "Age of the oldest pending event, by topic.", ["topic"]
)
IN_FLIGHT = Gauge("syncapp_bus_in_flight", "Events claimed and not settled, by topic.", ["topic"])
DEAD = Gauge("syncapp_bus_dead_letters", "Dead letters kept for operators, by topic.", ["topic"])
