"""The resource API: ``/v1/me``, ``/v1/templates``, template previews, and the partner API
(``/partner/v1/accounts``) through which a partner app provisions a merchant's account and
obtains its grant without the merchant leaving the partner's UI.

Errors are RFC 9457 problem details with a ``code``. Bearer failures follow RFC 6750 §3: no
token → 401 without error code; unknown, expired or revoked → 401 ``invalid_token``; missing
scope → 403 ``insufficient_scope``.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from syncapp.sandbox.ctrwow import accounts, catalog, idempotency, tokens
from syncapp.sandbox.ctrwow.oauth import render, rules
from syncapp.sandbox.ctrwow.state import SandboxState

REALM = 'realm="ctrwow"'
_PROBLEM_TYPE = "https://docs.ctrwow.example/problems/"


def problem(
    status: int,
    code: str,
    title: str,
    detail: str = "",
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": _PROBLEM_TYPE + code,
        "title": title,
        "status": status,
        "code": code,
    }
    if detail:
        body["detail"] = detail
    body.update(extra)
    return JSONResponse(
        body, status_code=status, headers=headers, media_type="application/problem+json"
    )


def require_token(
    state: SandboxState, request: Request, scope: str
) -> tokens.AccessInfo | JSONResponse:
    """The caller's live access token carrying ``scope``, or the 401/403 to answer."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return problem(
            401,
            "missing_token",
            "Authentication required",
            "Send an access token as 'Authorization: Bearer <token>'.",
            headers={"WWW-Authenticate": f"Bearer {REALM}"},
        )
    with state.db.transaction() as conn:
        info = tokens.lookup_access(conn, token.strip(), now=state.now())
    if info is None:
        return problem(
            401,
            "invalid_token",
            "Invalid access token",
            "The access token is unknown, expired or revoked; refresh it or connect again.",
            headers={
                "WWW-Authenticate": f'Bearer {REALM}, error="invalid_token",'
                ' error_description="The access token is unknown, expired or revoked"'
            },
        )
    if scope not in info.scopes:
        return problem(
            403,
            "insufficient_scope",
            "Insufficient scope",
            f"This call needs the scope '{scope}'.",
            headers={
                "WWW-Authenticate": f'Bearer {REALM}, error="insufficient_scope", scope="{scope}"'
            },
        )
    return info


# --- account and templates -----------------------------------------------------------------


async def me(state: SandboxState, request: Request) -> Response:
    info = require_token(state, request, "account:read")
    if isinstance(info, Response):
        return info
    with state.db.transaction() as conn:
        account = accounts.get_account(conn, info.account_id or "")
    if account is None:
        return problem(404, "account_not_found", "Account not found")
    return JSONResponse(account.to_json())


async def list_templates(state: SandboxState, request: Request) -> Response:
    info = require_token(state, request, "templates:read")
    if isinstance(info, Response):
        return info
    kind = request.query_params.get("kind")
    if kind is not None and kind not in catalog.KINDS:
        return problem(
            400,
            "invalid_parameter",
            "Invalid kind",
            f"kind must be one of {', '.join(catalog.KINDS)}.",
        )
    raw_limit = request.query_params.get("limit", "50")
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 100:
        return problem(400, "invalid_parameter", "Invalid limit", "limit must be 1 to 100.")
    chunk, next_cursor = catalog.page(
        kind=kind, after=request.query_params.get("cursor"), limit=int(raw_limit)
    )
    return JSONResponse(
        {
            "data": [t.to_json(state.config.public_url) for t in chunk],
            "next_cursor": next_cursor,
        }
    )


async def preview(state: SandboxState, request: Request) -> Response:
    template = catalog.find(request.path_params["template_id"])
    if template is None:
        return render("error.html", 404, title="Template not found", message="No such template.")
    return render("preview.html", template=template)


# --- partner API ---------------------------------------------------------------------------


def _idempotency_key(request: Request) -> str | JSONResponse:
    key = request.headers.get("idempotency-key", "")
    if not key or len(key) > 255 or not key.isprintable():
        return problem(
            400,
            "idempotency_key_required",
            "Idempotency-Key required",
            "Every write needs an Idempotency-Key header of 1 to 255 printable characters.",
        )
    return key


async def _json_object(request: Request, *, optional: bool = False) -> dict[str, Any] | Response:
    raw = await request.body()
    if not raw and optional:
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        body = None
    if not isinstance(body, dict):
        return problem(400, "invalid_body", "Invalid body", "The body must be a JSON object.")
    return body


def _provision_problem(body: dict[str, Any]) -> str:
    allowed = {"external_ref", "email", "name", "scope"}
    unknown = sorted(set(body) - allowed)
    if unknown:
        return f"Unknown fields: {', '.join(unknown)}."
    for field, limit in (("external_ref", 255), ("email", 254), ("name", 200)):
        value = body.get(field)
        if not isinstance(value, str) or not value.strip():
            return f"'{field}' is required and must be a non-empty string."
        if len(value) > limit:
            return f"'{field}' must be at most {limit} characters."
    email = str(body["email"])
    local, at, domain = email.partition("@")
    if not (local and at and "." in domain):
        return "'email' must be an email address."
    if "scope" in body and not isinstance(body["scope"], str):
        return "'scope' must be a space-separated string."
    return ""


def _replayed(stored: idempotency.Stored) -> JSONResponse:
    media = "application/problem+json" if stored.status >= 400 else "application/json"
    headers = {"Idempotent-Replayed": "true"}
    if stored.status < 400:
        headers["Cache-Control"] = "no-store"
    return JSONResponse(stored.body, status_code=stored.status, headers=headers, media_type=media)


def _key_reused() -> JSONResponse:
    return problem(
        422,
        "idempotency_key_reused",
        "Idempotency-Key reused",
        "This Idempotency-Key was used with a different request; use a new key.",
    )


async def provision_account(state: SandboxState, request: Request) -> Response:
    info = require_token(state, request, "partner:accounts")
    if isinstance(info, Response):
        return info
    key = _idempotency_key(request)
    if isinstance(key, Response):
        return key
    body = await _json_object(request)
    if isinstance(body, Response):
        return body
    if message := _provision_problem(body):
        return problem(400, "invalid_body", "Invalid body", message)
    client = state.config.client(info.client_id)
    assert client is not None
    fp = idempotency.fingerprint("POST", request.url.path, body)
    now = state.now()
    with state.db.transaction() as conn:
        try:
            stored = idempotency.lookup(
                conn,
                client_id=client.client_id,
                key=key,
                fp=fp,
                now=now,
                ttl=state.config.idempotency_ttl,
            )
        except idempotency.KeyReused:
            return _key_reused()
        if stored is not None:
            return _replayed(stored)
        try:
            scope = tokens.narrow_scope(body.get("scope"), list(client.scopes))
        except tokens.ScopeRefused as exc:
            return problem(400, "invalid_scope", "Invalid scope", str(exc))
        status, result = _provision(state, conn, client.client_id, body, scope, now)
        idempotency.store(
            conn, client_id=client.client_id, key=key, fp=fp, status=status, body=result, now=now
        )
    if status >= 400:
        return JSONResponse(result, status_code=status, media_type="application/problem+json")
    return JSONResponse(result, status_code=status, headers={"Cache-Control": "no-store"})


def _provision(
    state: SandboxState,
    conn: sqlite3.Connection,
    client_id: str,
    body: dict[str, Any],
    scope: str,
    now: float,
) -> tuple[int, dict[str, Any]]:
    external_ref = str(body["external_ref"]).strip()
    existing = accounts.linked_account(conn, client_id, external_ref)
    if existing is not None:
        return 409, {
            "type": _PROBLEM_TYPE + "account_exists",
            "title": "Account already exists",
            "status": 409,
            "code": "account_exists",
            "detail": f"You already provisioned an account for {external_ref}.",
            "account_id": existing,
        }
    try:
        account = accounts.create_account(
            conn,
            name=str(body["name"]),
            email=str(body["email"]),
            now=now,
            created_via="partner",
            external_ref=external_ref,
        )
    except accounts.EmailTaken:
        return 409, {
            "type": _PROBLEM_TYPE + "email_in_use",
            "title": "Email already has a CTRwow account",
            "status": 409,
            "code": "email_in_use",
            "detail": "The merchant already has a CTRwow account: connect it through"
            " /oauth/authorize with login_hint set to this email.",
        }
    accounts.link(
        conn, client_id=client_id, external_ref=external_ref, account_id=account.id, now=now
    )
    grant = tokens.start_grant(
        conn,
        client_id=client_id,
        account_id=account.id,
        scope=scope,
        origin="partner",
        now=now,
        rules=rules(state),
    )
    return 201, {"account": account.to_json(), "token": tokens.public_body(grant, now)}


async def issue_account_tokens(state: SandboxState, request: Request) -> Response:
    info = require_token(state, request, "partner:accounts")
    if isinstance(info, Response):
        return info
    key = _idempotency_key(request)
    if isinstance(key, Response):
        return key
    body = await _json_object(request, optional=True)
    if isinstance(body, Response):
        return body
    if set(body) - {"scope"} or not isinstance(body.get("scope", ""), str):
        return problem(400, "invalid_body", "Invalid body", "Only 'scope' (a string) is accepted.")
    client = state.config.client(info.client_id)
    assert client is not None
    account_id = request.path_params["account_id"]
    fp = idempotency.fingerprint("POST", request.url.path, body)
    now = state.now()
    with state.db.transaction() as conn:
        try:
            stored = idempotency.lookup(
                conn,
                client_id=client.client_id,
                key=key,
                fp=fp,
                now=now,
                ttl=state.config.idempotency_ttl,
            )
        except idempotency.KeyReused:
            return _key_reused()
        if stored is not None:
            return _replayed(stored)
        if not accounts.is_linked(conn, client.client_id, account_id):
            return problem(
                404,
                "account_not_found",
                "Account not found",
                "No account with this id was provisioned by your client.",
            )
        try:
            scope = tokens.narrow_scope(body.get("scope"), list(client.scopes))
        except tokens.ScopeRefused as exc:
            return problem(400, "invalid_scope", "Invalid scope", str(exc))
        # One live family per partner and account: a new grant replaces the old ones.
        tokens.revoke_client_grants(
            conn, client_id=client.client_id, account_id=account_id, reason="replaced", now=now
        )
        grant = tokens.start_grant(
            conn,
            client_id=client.client_id,
            account_id=account_id,
            scope=scope,
            origin="partner",
            now=now,
            rules=rules(state),
        )
        result = tokens.public_body(grant, now)
        idempotency.store(
            conn, client_id=client.client_id, key=key, fp=fp, status=201, body=result, now=now
        )
    return JSONResponse(result, status_code=201, headers={"Cache-Control": "no-store"})


def routes(state: SandboxState) -> list[BaseRoute]:
    async def me_route(request: Request) -> Response:
        return await me(state, request)

    async def templates_route(request: Request) -> Response:
        return await list_templates(state, request)

    async def preview_route(request: Request) -> Response:
        return await preview(state, request)

    async def provision_route(request: Request) -> Response:
        return await provision_account(state, request)

    async def tokens_route(request: Request) -> Response:
        return await issue_account_tokens(state, request)

    return [
        Route("/v1/me", me_route, methods=["GET"]),
        Route("/v1/templates", templates_route, methods=["GET"]),
        Route("/templates/{template_id}/preview", preview_route, methods=["GET"]),
        Route("/partner/v1/accounts", provision_route, methods=["POST"]),
        Route("/partner/v1/accounts/{account_id}/tokens", tokens_route, methods=["POST"]),
    ]
