"""``/_sandbox/...``: control routes that do not exist on eManageCRM. Tests and ``make run`` use
them to look at the sandbox's state, to stand in for what a merchant does in their own
eManageCRM (a dedicated subscription and its link code, payment providers, campaigns), and to
make the sandbox fail or move its clock. They answer only loopback clients.
"""

from __future__ import annotations

import sqlite3
import uuid

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from syncapp.sandbox.emanage import providers, websales
from syncapp.sandbox.emanage.accounts import (
    account_json,
    insert_account,
    issue_link_code,
    user_json,
)
from syncapp.sandbox.emanage.common import (
    CURRENCY_RE,
    EMAIL_RE,
    UUID_RE,
    read_json_object,
)
from syncapp.sandbox.emanage.faults import FAULT_STATUSES
from syncapp.sandbox.emanage.sso import new_sso_link
from syncapp.sandbox.emanage.state import EmanageState, iso
from syncapp.sandbox.emanage.ui import INTEGRATIONS_PATH

_LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost", "testclient"})


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def local_only(request: Request) -> Response | None:
    """None for a loopback client; the 404 every other client gets for ``/_sandbox/``."""
    host = request.client.host if request.client else ""
    if host not in _LOOPBACK:
        return _error(404, "Not Found")
    return None


def routes(state: EmanageState) -> list[BaseRoute]:
    """Accounts, subscriptions, providers, campaigns, faults and clock."""

    def account_or_404(conn: sqlite3.Connection, account_id: str) -> sqlite3.Row | Response:
        row = None
        if UUID_RE.match(account_id):
            row = conn.execute(
                "SELECT * FROM accounts WHERE id = ?", (account_id.lower(),)
            ).fetchone()
        return row if row is not None else _error(404, f"no account {account_id}")

    async def accounts(request: Request) -> Response:
        if (refused := local_only(request)) is not None:
            return refused
        out = []
        with state.db.transaction() as conn:
            for row in conn.execute("SELECT * FROM accounts ORDER BY created_at, rowid"):
                users = conn.execute(
                    "SELECT * FROM users WHERE account_id = ? ORDER BY created_at, rowid",
                    (row["id"],),
                ).fetchall()
                campaigns = conn.execute(
                    "SELECT id, web_key, name, status FROM campaigns WHERE account_id = ?",
                    (row["id"],),
                ).fetchall()
                out.append(
                    {
                        **account_json(state, row),
                        "ownerClientId": row["owner_client_id"],
                        "users": [user_json(u) for u in users],
                        "paymentProviders": providers.list_providers(conn, row["id"]),
                        "campaigns": [
                            {
                                "id": c["id"],
                                "webKey": c["web_key"],
                                "name": c["name"],
                                "status": c["status"],
                            }
                            for c in campaigns
                        ],
                    }
                )
        return JSONResponse({"accounts": out})

    async def create_subscription(request: Request) -> Response:
        if (refused := local_only(request)) is not None:
            return refused
        body = await read_json_object(request, optional=True)
        if isinstance(body, Response):
            return body
        name = str(body.get("name", "Dedicated subscription"))
        email = str(body.get("email", "owner@example.com"))
        currency = str(body.get("currency", "USD"))
        if not EMAIL_RE.match(email) or not CURRENCY_RE.match(currency) or not name.strip():
            return _error(400, "name (non-empty), email and currency (e.g. USD) are required")
        with state.db.transaction() as conn:
            subscription_id = str(uuid.uuid4())
            account_id = insert_account(
                conn,
                kind="dedicated",
                name=name.strip(),
                email=email,
                currency=currency,
                now=state.clock.now(),
                subscription_id=subscription_id,
            )
            code = issue_link_code(state, conn, account_id)
            # The subscription's owner, so the merchant can sign in to it and generate codes
            # on Settings > Integrations as in their real eManageCRM.
            owner_id = str(uuid.uuid4())
            conn.execute(
                "INSERT INTO users VALUES (?, ?, ?, ?, ?, ?)",
                (owner_id, account_id, email.lower(), name.strip(), "owner", state.clock.now()),
            )
            sign_in = new_sso_link(state, conn, account_id, owner_id, INTEGRATIONS_PATH)
        return JSONResponse(
            {
                "subscriptionId": subscription_id,
                "accountId": account_id,
                "ownerUserId": owner_id,
                "signInUrl": sign_in["url"],
                **code,
            },
            status_code=201,
        )

    async def new_code(request: Request) -> Response:
        if (refused := local_only(request)) is not None:
            return refused
        subscription_id = str(request.path_params["subscription_id"]).lower()
        with state.db.transaction() as conn:
            row = conn.execute(
                "SELECT id FROM accounts WHERE subscription_id = ?", (subscription_id,)
            ).fetchone()
            if row is None:
                return _error(404, f"no subscription {subscription_id}")
            code = issue_link_code(state, conn, row["id"])
        return JSONResponse({"subscriptionId": subscription_id, **code}, status_code=201)

    async def add_provider(request: Request) -> Response:
        if (refused := local_only(request)) is not None:
            return refused
        body = await read_json_object(request)
        if isinstance(body, Response):
            return body
        values = {
            k: str(body.get(k, d))
            for k, d in (
                ("name", "Test Gateway"),
                ("type", "Test Gateway"),
                ("mid", "TEST-MID-0001"),
                ("currency", "USD"),
                ("descriptor", ""),
            )
        }
        if errors := providers.check_provider(values):
            return JSONResponse({"error": "invalid provider", "modelState": errors}, 400)
        with state.db.transaction() as conn:
            account = account_or_404(conn, str(request.path_params["account_id"]))
            if isinstance(account, Response):
                return account
            provider_id = providers.add_provider(
                conn,
                account_id=account["id"],
                values=values,
                now=state.clock.now(),
                active=bool(body.get("isActive", False)),
            )
            row = conn.execute(
                "SELECT * FROM payment_providers WHERE id = ?", (provider_id,)
            ).fetchone()
            return JSONResponse(providers.provider_json(conn, row), status_code=201)

    async def add_campaign(request: Request) -> Response:
        if (refused := local_only(request)) is not None:
            return refused
        body = await read_json_object(request)
        if isinstance(body, Response):
            return body
        with state.db.transaction() as conn:
            account = account_or_404(conn, str(request.path_params["account_id"]))
            if isinstance(account, Response):
                return account
            if problems := websales.check_campaign_spec(body, account["currency"]):
                return _error(400, "; ".join(problems))
            if problems := websales.check_variants(conn, account["id"], body):
                return _error(400, "; ".join(problems))
            try:
                campaign = websales.seed_campaign(
                    conn, account=account, spec=body, now=state.clock.now()
                )
            except sqlite3.IntegrityError:
                return _error(409, "a campaign with this webKey exists")
        return JSONResponse(campaign, status_code=201)

    async def account_status(request: Request) -> Response:
        if (refused := local_only(request)) is not None:
            return refused
        body = await read_json_object(request)
        if isinstance(body, Response):
            return body
        status = body.get("status")
        if status not in ("active", "suspended"):
            return _error(400, "status must be 'active' or 'suspended'")
        with state.db.transaction() as conn:
            account = account_or_404(conn, str(request.path_params["account_id"]))
            if isinstance(account, Response):
                return account
            conn.execute("UPDATE accounts SET status = ? WHERE id = ?", (status, account["id"]))
            row = conn.execute("SELECT * FROM accounts WHERE id = ?", (account["id"],)).fetchone()
        return JSONResponse(account_json(state, row))

    async def faults(request: Request) -> Response:
        if (refused := local_only(request)) is not None:
            return refused
        f = state.faults
        if request.method == "DELETE":
            with f.lock:
                f.fail_next, f.down_until, f.retry_after, f.status = 0, 0.0, None, 503
                f.latency = 0.0
        elif request.method == "POST":
            body = await read_json_object(request)
            if isinstance(body, Response):
                return body
            status = body.get("status", 503)
            fail_next = body.get("failNext", 0)
            down = body.get("downForSeconds", 0)
            retry_after = body.get("retryAfter")
            latency = body.get("latencySeconds", f.latency)
            if not isinstance(latency, int | float) or not 0 <= latency <= 60:
                return _error(400, "latencySeconds must be a number from 0 to 60")
            if status not in FAULT_STATUSES:
                return _error(400, f"status must be one of {sorted(FAULT_STATUSES)}")
            if not isinstance(fail_next, int) or fail_next < 0:
                return _error(400, "failNext must be an integer >= 0")
            if not isinstance(down, int | float) or down < 0:
                return _error(400, "downForSeconds must be a number >= 0")
            if retry_after is not None and (
                not isinstance(retry_after, int | float) or retry_after < 0
            ):
                return _error(400, "retryAfter must be a number >= 0")
            with f.lock:
                f.status, f.fail_next, f.retry_after = status, fail_next, retry_after
                f.latency = float(latency)
                f.down_until = state.clock.now() + down if down else 0.0
        return JSONResponse(f.snapshot(state.clock.now()))

    async def clock(request: Request) -> Response:
        if (refused := local_only(request)) is not None:
            return refused
        if request.method == "POST":
            body = await read_json_object(request)
            if isinstance(body, Response):
                return body
            seconds = body.get("advanceSeconds")
            if not isinstance(seconds, int | float) or seconds < 0:
                return _error(400, "advanceSeconds must be a number >= 0")
            state.clock.advance(float(seconds))
        return JSONResponse({"now": iso(state.clock.now()), "offsetSeconds": state.clock.offset})

    return [
        Route("/_sandbox/accounts", accounts, methods=["GET"]),
        Route("/_sandbox/subscriptions", create_subscription, methods=["POST"]),
        Route("/_sandbox/subscriptions/{subscription_id}/link-codes", new_code, methods=["POST"]),
        Route("/_sandbox/accounts/{account_id}/payment-providers", add_provider, methods=["POST"]),
        Route("/_sandbox/accounts/{account_id}/campaigns", add_campaign, methods=["POST"]),
        Route("/_sandbox/accounts/{account_id}/status", account_status, methods=["POST"]),
        Route("/_sandbox/faults", faults, methods=["GET", "POST", "DELETE"]),
        Route("/_sandbox/clock", clock, methods=["GET", "POST"]),
    ]
