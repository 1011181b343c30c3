"""``/_sandbox/`` routes: they do not exist on CTRwow. Tests and ``make run`` use them to look
at the state (accounts, grants, live tokens), to create an account that can sign in, to make
the sandbox fail (503 for the next N requests, or down for T seconds) and to move its clock.

When ``config.control_token`` is set, every control call needs ``X-Sandbox-Token``.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from syncapp.sandbox.ctrwow import accounts, tokens
from syncapp.sandbox.ctrwow.state import SandboxState


def _refused(state: SandboxState, request: Request) -> Response | None:
    expected = state.config.control_token
    if expected is None:
        return None
    given = request.headers.get("x-sandbox-token", "")
    if secrets.compare_digest(given.encode(), expected.encode()):
        return None
    return JSONResponse({"error": "X-Sandbox-Token missing or wrong"}, status_code=403)


async def _body(request: Request) -> dict[str, Any] | Response:
    raw = await request.body()
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return JSONResponse({"error": "the body must be a JSON object"}, status_code=400)
    return body


def _number(body: dict[str, Any], name: str, default: float) -> float:
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"'{name}' must be a non-negative number")
    return float(value)


def routes(state: SandboxState) -> list[BaseRoute]:
    async def list_accounts(request: Request) -> Response:
        if (refused := _refused(state, request)) is not None:
            return refused
        with state.db.transaction() as conn:
            found = accounts.list_accounts(conn)
        return JSONResponse(
            {
                "accounts": [
                    {**a.to_json(), "created_via": a.created_via, "can_sign_in": a.has_password}
                    for a in found
                ]
            }
        )

    async def create_account(request: Request) -> Response:
        if (refused := _refused(state, request)) is not None:
            return refused
        body = await _body(request)
        if isinstance(body, Response):
            return body
        email, name, password = (str(body.get(k, "")) for k in ("email", "name", "password"))
        if not email or not name or len(password) < 8:
            return JSONResponse(
                {"error": "email, name and a password of 8+ characters are required"},
                status_code=400,
            )
        try:
            with state.db.transaction() as conn:
                account = accounts.create_account(
                    conn,
                    name=name,
                    email=email,
                    now=state.now(),
                    created_via="authorize",
                    password_hash=accounts.hash_password(
                        password, rounds=state.config.password_rounds
                    ),
                    external_ref=body.get("external_ref"),
                )
        except accounts.EmailTaken:
            return JSONResponse({"error": f"{email} already has an account"}, status_code=409)
        return JSONResponse(account.to_json(), status_code=201)

    async def live_tokens(request: Request) -> Response:
        if (refused := _refused(state, request)) is not None:
            return refused
        account_id = request.query_params.get("account_id")
        with state.db.transaction() as conn:
            found = tokens.live_tokens(conn, now=state.now())
        if account_id:
            found = [t for t in found if t["account_id"] == account_id]
        return JSONResponse({"tokens": found})

    async def grants(request: Request) -> Response:
        if (refused := _refused(state, request)) is not None:
            return refused
        account_id = request.query_params.get("account_id")
        with state.db.transaction() as conn:
            rows = conn.execute(
                "SELECT * FROM grants WHERE (? IS NULL OR account_id = ?) ORDER BY created_at",
                (account_id, account_id),
            ).fetchall()
        return JSONResponse({"grants": [dict(r) for r in rows]})

    async def get_faults(request: Request) -> Response:
        if (refused := _refused(state, request)) is not None:
            return refused
        return JSONResponse(state.faults.snapshot())

    async def set_faults(request: Request) -> Response:
        if (refused := _refused(state, request)) is not None:
            return refused
        body = await _body(request)
        if isinstance(body, Response):
            return body
        try:
            fail_next = int(_number(body, "fail_next", 0))
            status = int(_number(body, "status", 503))
            down_for = _number(body, "down_for", 0)
            retry_after = int(_number(body, "retry_after", 1))
            latency = _number(body, "latency", 0)
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        if not 500 <= status <= 599 and status != 429:
            return JSONResponse({"error": "'status' must be 429 or 5xx"}, status_code=400)
        if not 0 <= latency <= 60:
            return JSONResponse({"error": "'latency' must be 0 to 60 seconds"}, status_code=400)
        state.faults.set(
            fail_next=fail_next,
            status=status,
            down_for=down_for,
            retry_after=retry_after,
            latency=latency,
        )
        return JSONResponse(state.faults.snapshot())

    async def clear_faults(request: Request) -> Response:
        if (refused := _refused(state, request)) is not None:
            return refused
        state.faults.set(fail_next=0, status=503, down_for=0, retry_after=1)
        return JSONResponse(state.faults.snapshot())

    async def clock(request: Request) -> Response:
        if (refused := _refused(state, request)) is not None:
            return refused
        body = await _body(request)
        if isinstance(body, Response):
            return body
        try:
            state.clock_offset += _number(body, "advance", 0)
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse({"offset": state.clock_offset, "now": state.now()})

    return [
        Route("/_sandbox/accounts", list_accounts, methods=["GET"]),
        Route("/_sandbox/accounts", create_account, methods=["POST"]),
        Route("/_sandbox/tokens", live_tokens, methods=["GET"]),
        Route("/_sandbox/grants", grants, methods=["GET"]),
        Route("/_sandbox/faults", get_faults, methods=["GET"]),
        Route("/_sandbox/faults", set_faults, methods=["POST"]),
        Route("/_sandbox/faults", clear_faults, methods=["DELETE"]),
        Route("/_sandbox/clock", clock, methods=["POST"]),
    ]
