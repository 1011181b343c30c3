"""``POST /iam/oauth/token``: the OAuth 2.0 client-credentials grant (RFC 6749 §4.4) for the
registered system clients, with ``account_id`` narrowing a token to one account. With a
``resource`` (RFC 8707), the token is a JWT for that other service
(:mod:`.access_tokens`, keys at ``/iam/.well-known/jwks.json``).

Client authentication is HTTP Basic or the form's ``client_id``/``client_secret`` (RFC 6749
§2.3.1); wrong credentials are 401 ``invalid_client``. Tokens are opaque, stored hashed, and
live ``config.token_ttl_seconds``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import secrets
import sqlite3
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote, urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from syncapp.sandbox.emanage import access_tokens
from syncapp.sandbox.emanage.access_tokens import signing_key
from syncapp.sandbox.emanage.common import UUID_RE
from syncapp.sandbox.emanage.state import EmanageState, digest

_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def oauth_error(status: int, error: str, description: str) -> JSONResponse:
    headers = dict(_NO_STORE)
    if status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="eManageCRM IAM"'
    return JSONResponse(
        {"error": error, "error_description": description}, status_code=status, headers=headers
    )


def _basic_credentials(header: str) -> tuple[str, str] | None:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        return None
    # RFC 6749 §2.3.1: both parts are form-urlencoded before Basic encoding.
    return unquote(client_id), unquote(secret)


def _resource(value: str) -> str | None:
    """An RFC 8707 resource: an absolute http(s) URI without a fragment."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.fragment:
        return None
    return value


def issue_opaque_token(
    conn: sqlite3.Connection,
    *,
    client_id: str,
    account_id: str | None,
    scopes: Sequence[str],
    now: float,
    ttl_seconds: int,
) -> str:
    """A new ``emt_`` bearer token (stored hashed) for the client, narrowed to ``account_id``
    when given; the token endpoint's and ``syncapp sandbox emanage token``'s one way."""
    access_token = "emt_" + secrets.token_urlsafe(32)
    conn.execute("DELETE FROM tokens WHERE expires_at < ?", (now - 3600,))
    conn.execute(
        "INSERT INTO tokens VALUES (?, ?, ?, ?, ?, ?)",
        (digest(access_token), client_id, account_id, " ".join(scopes), now, now + ttl_seconds),
    )
    return access_token


def routes(state: EmanageState) -> list[BaseRoute]:
    """The token endpoint, and the JWKS of the JWT access tokens it issues for a resource."""
    key = signing_key(state)

    async def token(request: Request) -> Response:
        content_type = request.headers.get("content-type", "")
        if not content_type.startswith("application/x-www-form-urlencoded"):
            return oauth_error(
                400, "invalid_request", "Send the form as application/x-www-form-urlencoded."
            )
        form = await request.form()
        fields: dict[str, str] = {k: str(v) for k, v in form.items()}
        basic = _basic_credentials(request.headers.get("authorization", ""))
        if basic is not None and ("client_secret" in fields):
            return oauth_error(
                400, "invalid_request", "Authenticate the client one way: Basic or form, not both."
            )
        client_id, client_secret = basic or (
            fields.get("client_id", ""),
            fields.get("client_secret", ""),
        )
        client = state.config.client(client_id)
        if client is None or not hmac.compare_digest(
            client.client_secret.encode(), client_secret.encode()
        ):
            return oauth_error(401, "invalid_client", "Unknown client or wrong client secret.")
        grant_type = fields.get("grant_type")
        if not grant_type:
            return oauth_error(400, "invalid_request", "'grant_type' is required.")
        if grant_type != "client_credentials":
            return oauth_error(
                400, "unsupported_grant_type", "Only grant_type=client_credentials is supported."
            )
        requested = fields.get("scope", "").split()
        granted = requested or list(client.scopes)
        if extra := sorted(set(granted) - set(client.scopes)):
            return oauth_error(
                400, "invalid_scope", f"The client is not registered for: {' '.join(extra)}."
            )
        account_id = fields.get("account_id", "").strip().lower() or None
        now = state.clock.now()
        with state.db.transaction() as conn:
            if account_id is not None:
                row = None
                if UUID_RE.match(account_id):
                    row = conn.execute(
                        "SELECT owner_client_id, status FROM accounts WHERE id = ?", (account_id,)
                    ).fetchone()
                if row is None or row["owner_client_id"] != client.client_id:
                    return oauth_error(
                        400, "invalid_target", f"There is no account {account_id} for this client."
                    )
                if row["status"] != "active":
                    return oauth_error(
                        400, "invalid_target", f"The account {account_id} is {row['status']}."
                    )
            if "resource" in fields:
                resource = _resource(fields["resource"])
                if resource is None:
                    return oauth_error(
                        400, "invalid_target", "'resource' must be an absolute http(s) URI."
                    )
                claims: dict[str, Any] = {
                    "iss": f"{state.public_url}/iam",
                    "aud": resource,
                    "sub": client.client_id,
                    "client_id": client.client_id,
                    "scope": " ".join(granted),
                    "iat": int(now),
                    "exp": int(now) + state.config.token_ttl_seconds,
                }
                if account_id is not None:
                    claims["account_id"] = account_id
                jwt_body: dict[str, Any] = {
                    "access_token": key.issue(claims),
                    "token_type": "Bearer",
                    "issued_token_type": "urn:ietf:params:oauth:token-type:jwt",
                    "expires_in": state.config.token_ttl_seconds,
                    "scope": " ".join(granted),
                }
                return JSONResponse(jwt_body, headers=_NO_STORE)
            access_token = issue_opaque_token(
                conn,
                client_id=client.client_id,
                account_id=account_id,
                scopes=granted,
                now=now,
                ttl_seconds=state.config.token_ttl_seconds,
            )
        body: dict[str, Any] = {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": state.config.token_ttl_seconds,
            "scope": " ".join(granted),
        }
        if account_id is not None:
            body["account_id"] = account_id
        return JSONResponse(body, headers=_NO_STORE)

    return [Route("/iam/oauth/token", token, methods=["POST"]), *access_tokens.routes(key)]
