"""Injected failures: the next N requests fail, or the sandbox is down for a while."""

from __future__ import annotations

import time

import httpx
import pytest

pytestmark = pytest.mark.anyio


async def test_the_next_requests_fail_with_the_chosen_status(http: httpx.AsyncClient) -> None:
    """failNext=2 with 503 and retryAfter fails exactly two requests, then serves again."""
    await http.post("/_sandbox/faults", json={"failNext": 2, "status": 503, "retryAfter": 2})
    statuses = [(await http.get("/healthz")).status_code for _ in range(3)]
    assert statuses == [503, 503, 200]


async def test_an_injected_failure_carries_retry_after(http: httpx.AsyncClient) -> None:
    """A 429 fault answers with the Retry-After it was given."""
    await http.post("/_sandbox/faults", json={"failNext": 1, "status": 429, "retryAfter": 7})
    response = await http.get("/healthz")
    assert response.status_code == 429
    assert response.headers["retry-after"] == "7"


async def test_down_means_503_until_the_time_passes(http: httpx.AsyncClient) -> None:
    """downForSeconds answers 503 to everything until the (sandbox) clock passes it."""
    await http.post("/_sandbox/faults", json={"downForSeconds": 60})
    down = await http.post("/iam/oauth/token", data={"grant_type": "client_credentials"})
    await http.post("/_sandbox/clock", json={"advanceSeconds": 61})
    up = await http.get("/healthz")
    assert down.status_code == 503
    assert int(down.headers["retry-after"]) > 0
    assert up.status_code == 200


async def test_control_routes_keep_answering_while_down(http: httpx.AsyncClient) -> None:
    """Faults never hit /_sandbox/, so a test can always clear them."""
    await http.post("/_sandbox/faults", json={"downForSeconds": 600})
    cleared = await http.delete("/_sandbox/faults")
    assert cleared.status_code == 200
    assert (await http.get("/healthz")).status_code == 200


async def test_control_routes_refuse_remote_clients(tmp_path: object) -> None:
    """A non-loopback client gets 404 from /_sandbox/."""
    from pathlib import Path

    from syncapp.sandbox.emanage import create_app
    from tests.integration.emanage.conftest import sandbox_config

    assert isinstance(tmp_path, Path)
    app = create_app(sandbox_config(tmp_path))
    transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 4711))
    async with httpx.AsyncClient(transport=transport, base_url="http://sandbox") as remote:
        response = await remote.get("/_sandbox/accounts")
    assert response.status_code == 404


async def test_latency_makes_every_answer_wait_until_cleared(http: httpx.AsyncClient) -> None:
    """latencySeconds delays each answer (a slow eManageCRM) and shows in the snapshot;
    DELETE clears it; a bad value is refused."""
    set_it = await http.post("/_sandbox/faults", json={"latencySeconds": 0.3})
    assert set_it.json()["latencySeconds"] == 0.3
    start = time.monotonic()
    assert (await http.get("/healthz")).status_code == 200
    assert time.monotonic() - start >= 0.3  # at least the latency: a lower bound, not a timing
    cleared = await http.delete("/_sandbox/faults")
    assert cleared.json()["latencySeconds"] == 0.0
    refused = await http.post("/_sandbox/faults", json={"latencySeconds": -1})
    assert refused.status_code == 400
