"""Operators' commands: `syncapp bus status`, `syncapp dlq list|show|replay|drop`, and the
bus's state in Prometheus metrics."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import insert, select
from typer.testing import CliRunner

from syncapp.bus.metrics import state_metrics
from syncapp.bus.models import InboundEvent
from syncapp.cli import app
from syncapp.store.db import make_engine, make_session_factory
from syncapp.store.migrate import upgrade

HISTORY = '[{"attempt": 3, "at": "2026-12-01T12:00:00", "error": "RuntimeError: boom"}]'


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite:///{tmp_path / 'ops.db'}"
    engine = make_engine(url)
    upgrade(engine)
    rows = [
        {
            "source": "shopify",
            "shop_domain": shop,
            "topic": topic,
            "delivery_id": f"d{n}",
            "payload": "{}",
            "partition_key": f"{shop}/shop",
            "status": status,
            "attempts": 3 if status == "dead" else 0,
            "last_error": "RuntimeError: boom" if status == "dead" else None,
            "history": HISTORY if status == "dead" else None,
        }
        for n, (shop, topic, status) in enumerate(
            [
                ("a.myshopify.com", "app/uninstalled", "dead"),
                ("b.myshopify.com", "app/uninstalled", "dead"),
                ("a.myshopify.com", "shop/redact", "pending"),
                ("a.myshopify.com", "app/scopes_update", "done"),
            ]
        )
    ]
    with engine.begin() as conn:
        conn.execute(insert(InboundEvent), rows)
    engine.dispose()
    monkeypatch.setenv("SYNCAPP_DATABASE_URL", url)
    monkeypatch.setenv("SYNCAPP_DATA_DIR", str(tmp_path))
    return url


def statuses(url: str) -> dict[str, str]:
    engine = make_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(select(InboundEvent.delivery_id, InboundEvent.status)).all()
    engine.dispose()
    return dict(rows)  # type: ignore[arg-type]


def test_bus_status_counts_pending_and_dead_letters_per_topic(db: str) -> None:
    """One row per topic with its pending and dead counts."""
    result = CliRunner().invoke(app, ["bus", "status"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    line = next(ln for ln in result.output.splitlines() if "app/uninstalled" in ln)
    assert [cell.strip() for cell in line.split("│")[3:6]] == ["0", "0", "2"]


def test_dlq_list_selects_by_shop_and_show_prints_the_history(db: str) -> None:
    """`dlq list --shop` lists that shop's dead letters; `show` the attempts."""
    runner = CliRunner()
    listed = runner.invoke(
        app, ["dlq", "list", "--shop", "a.myshopify.com"], env={"COLUMNS": "200"}
    )
    assert listed.exit_code == 0, listed.output
    assert "a.myshopify.com" in listed.output
    assert "b.myshopify.com" not in listed.output
    shown = runner.invoke(app, ["dlq", "show", "1"], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    assert "RuntimeError: boom" in shown.output


def test_dlq_replay_is_idempotent_and_drop_deletes(db: str) -> None:
    """Replay moves the selected dead letters back once; drop deletes the rest."""
    runner = CliRunner()
    first = runner.invoke(app, ["dlq", "replay", "--shop", "a.myshopify.com"])
    assert "replayed 1" in first.output
    again = runner.invoke(app, ["dlq", "replay", "--shop", "a.myshopify.com"])
    assert "replayed 0" in again.output
    assert statuses(db)["d0"] == "pending"
    dropped = runner.invoke(app, ["dlq", "drop", "--topic", "app/uninstalled"])
    assert "dropped 1" in dropped.output
    assert "d1" not in statuses(db)


def test_the_bus_state_is_in_prometheus_metrics(db: str) -> None:
    """Depth and dead letters per topic, read from the rows at scrape time."""
    engine = make_engine(db)
    text = state_metrics(make_session_factory(engine)).decode()
    engine.dispose()
    assert 'syncapp_bus_dead_letters{topic="app/uninstalled"} 2.0' in text
    assert 'syncapp_bus_depth{topic="shop/redact"} 1.0' in text
