"""``POST /admin/oauth/access_token`` as Shopify answers it, App Home ID tokens, and the
sandbox's control routes for shops and tokens.

Token endpoint (on the shop's host, ``<shop>.myshopify.com``; JSON or form body):

* token exchange — an App Home ID token (HS256 JWT signed with the client secret) becomes an
  offline token (expiring: one hour, with a 90-day rotating refresh token) or an online token
  for the ID token's user. A bad ID token is refused with 400 ``invalid_subject_token``.
* refresh — ``grant_type=refresh_token`` rotates the pair; see :mod:`tokens` for which tokens
  stay usable meanwhile. A refused refresh token gets 400 ``invalid_grant``.
* wrong client credentials, or a shop that has uninstalled the app: 401 ``invalid_client``.

The scopes granted are the app's declared ``[access_scopes] scopes``: ``config.extra["scopes"]``
when set, else read from the ``shopify.app.toml`` at ``config.extra["app_toml"]`` or in the
working directory.

Control routes (``/_sandbox/shops...``) exist only on the sandbox's own address, never on a
shop's host: they create shops, mint ID tokens and custom-app tokens, install and uninstall the
app and trigger the mandatory compliance webhooks.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
import tomllib
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import jwt
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from syncapp.sandbox.shopify import tokens
from syncapp.sandbox.shopify.config import SandboxConfig
from syncapp.sandbox.shopify.events import record_webhook
from syncapp.sandbox.shopify.shops import (
    Shop,
    ensure_shop,
    get_shop,
    normalize_domain,
    shop_domain_from_host,
)
from syncapp.sandbox.shopify.state import SandboxState

TOKEN_EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"  # noqa: S105 (a URN, not a secret)
ID_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:id_token"  # noqa: S105
OFFLINE_TOKEN_TYPE = "urn:shopify:params:oauth:token-type:offline-access-token"  # noqa: S105
ONLINE_TOKEN_TYPE = "urn:shopify:params:oauth:token-type:online-access-token"  # noqa: S105
ID_TOKEN_LEEWAY = 10

COMPLIANCE_TOPICS = {
    "customers-data_request": "customers/data_request",
    "customers-redact": "customers/redact",
    "shop-redact": "shop/redact",
}


# --- scopes -------------------------------------------------------------------------------


def load_access_scopes(toml_path: Path) -> str:
    """The ``[access_scopes] scopes`` of a ``shopify.app.toml``, normalised (no spaces)."""
    data = tomllib.loads(toml_path.read_text(encoding="utf-8"))
    raw = str(data.get("access_scopes", {}).get("scopes", ""))
    return ",".join(s.strip() for s in raw.split(",") if s.strip())


def granted_scopes(config: SandboxConfig) -> str:
    """The scopes a token for the sandbox's app carries (see the module docstring)."""
    if "scopes" in config.extra:
        return config.extra["scopes"]
    toml_path = Path(config.extra.get("app_toml", "shopify.app.toml"))
    if not toml_path.is_file():
        raise RuntimeError(
            f"cannot find the app's scopes: {toml_path.resolve()} does not exist; set"
            " SandboxConfig.extra['scopes'] or extra['app_toml'] to the shopify.app.toml path"
        )
    return load_access_scopes(toml_path)


# --- ID tokens ----------------------------------------------------------------------------


def mint_id_token(
    config: SandboxConfig,
    shop_domain: str,
    *,
    user_id: int = 1,
    lifetime: int = 60,
    now: float | None = None,
) -> str:
    """An App Home session (ID) token for ``shop_domain``, signed as Shopify signs them."""
    shop = normalize_domain(shop_domain)
    issued = int(time.time() if now is None else now)
    claims = {
        "iss": f"https://{shop}/admin",
        "dest": f"https://{shop}",
        "aud": config.client_id,
        "sub": str(user_id),
        "exp": issued + lifetime,
        "nbf": issued,
        "iat": issued,
        "jti": str(uuid.uuid4()),
        # One session per user and app, stable across tokens, as App Bridge's are.
        "sid": uuid.uuid5(uuid.NAMESPACE_URL, f"{shop}/{config.client_id}/{user_id}").hex,
    }
    return jwt.encode(claims, config.client_secret, algorithm="HS256")


class InvalidIdToken(Exception):
    """The subject token is not a valid ID token for this app and shop."""


def verify_id_token(config: SandboxConfig, token: str, shop_domain: str) -> dict[str, Any]:
    """Decode an ID token the way Shopify does before exchanging it; raises InvalidIdToken."""
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            config.client_secret,
            algorithms=["HS256"],
            audience=config.client_id,
            leeway=ID_TOKEN_LEEWAY,
            options={"require": ["exp", "nbf", "aud", "dest", "sub"]},
        )
    except jwt.PyJWTError as exc:
        raise InvalidIdToken(str(exc)) from exc
    dest_host = urlparse(str(claims["dest"])).hostname
    if dest_host != shop_domain:
        raise InvalidIdToken(f"the token is for {dest_host}, not {shop_domain}")
    return claims


# --- token endpoint -----------------------------------------------------------------------


def _oauth_error(error: str, description: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description}, status_code=status)


async def _read_params(request: Request) -> dict[str, str] | None:
    """The body as flat string parameters (JSON or form), None when it cannot be read."""
    content_type = request.headers.get("content-type", "")
    try:
        if "application/json" in content_type:
            body = json.loads(await request.body() or b"{}")
            if not isinstance(body, dict):
                return None
            return {str(k): str(v) for k, v in body.items() if v is not None}
        form = await request.form()
        return {k: v for k, v in form.items() if isinstance(v, str)}
    except (ValueError, UnicodeDecodeError):
        return None


def _shop_or_error(conn: sqlite3.Connection, shop_domain: str) -> Shop | JSONResponse:
    shop = get_shop(conn, shop_domain)
    if shop is None:
        return JSONResponse({"errors": "Not Found"}, status_code=404)
    row = conn.execute(
        "SELECT app_installed FROM shops WHERE domain = ?", (shop_domain,)
    ).fetchone()
    if not row["app_installed"]:
        return _oauth_error("invalid_client", "The app is not installed on this shop.", status=401)
    return shop


def _token_body(issued: tokens.IssuedToken) -> dict[str, Any]:
    body: dict[str, Any] = {"access_token": issued.access_token, "scope": issued.scope}
    if issued.expires_in is not None:
        body["expires_in"] = issued.expires_in
    if issued.refresh_token is not None:
        body["refresh_token"] = issued.refresh_token
        body["refresh_token_expires_in"] = issued.refresh_token_expires_in
    return body


def _associated_user(shop: Shop, user_id: int) -> dict[str, Any]:
    return {
        "id": user_id,
        "first_name": "Staff",
        "last_name": f"User {user_id}",
        "email": f"staff{user_id}@{shop.domain.removesuffix('.myshopify.com')}.example",
        "account_owner": user_id == 1,
        "locale": "en",
        "collaborator": False,
        "email_verified": True,
    }


def _token_exchange(state: SandboxState, shop_domain: str, params: dict[str, str]) -> Response:
    config = state.config
    if params.get("subject_token_type") != ID_TOKEN_TYPE:
        return _oauth_error(
            "invalid_subject_token_type", f"subject_token_type must be {ID_TOKEN_TYPE}."
        )
    requested = params.get("requested_token_type", OFFLINE_TOKEN_TYPE)
    if requested not in (OFFLINE_TOKEN_TYPE, ONLINE_TOKEN_TYPE):
        return _oauth_error(
            "invalid_request",
            f"requested_token_type must be {OFFLINE_TOKEN_TYPE} or {ONLINE_TOKEN_TYPE}.",
        )
    try:
        claims = verify_id_token(config, params.get("subject_token", ""), shop_domain)
    except InvalidIdToken:
        return _oauth_error(
            "invalid_subject_token",
            "Token exchange cannot be performed due to an invalid subject token.",
        )
    scope = granted_scopes(config)
    with state.db.transaction() as conn:
        shop = _shop_or_error(conn, shop_domain)
        if isinstance(shop, Response):
            return shop
        if requested == OFFLINE_TOKEN_TYPE:
            expiring = params.get("expiring", "0") in ("1", "true", "True")
            issued = tokens.issue_offline_token(conn, shop_domain, scope, expiring=expiring)
            return JSONResponse(_token_body(issued))
        try:
            user_id = int(claims["sub"])
        except ValueError:
            return _oauth_error(
                "invalid_subject_token",
                "Token exchange cannot be performed due to an invalid subject token.",
            )
        issued = tokens.issue_online_token(conn, shop_domain, scope, user_id=user_id)
    body = _token_body(issued)
    body["associated_user_scope"] = scope
    body["associated_user"] = _associated_user(shop, user_id)
    return JSONResponse(body)


def _refresh(state: SandboxState, shop_domain: str, params: dict[str, str]) -> Response:
    refresh_token = params.get("refresh_token", "")
    if not refresh_token:
        return _oauth_error("invalid_request", "refresh_token is required.")
    with state.db.transaction() as conn:
        shop = _shop_or_error(conn, shop_domain)
        if isinstance(shop, Response):
            return shop
        try:
            issued = tokens.refresh_offline_token(conn, shop_domain, refresh_token)
        except tokens.InvalidRefreshToken as exc:
            return _oauth_error("invalid_grant", str(exc))
    return JSONResponse(_token_body(issued))


async def access_token_endpoint(state: SandboxState, request: Request) -> Response:
    """``POST https://<shop>.myshopify.com/admin/oauth/access_token``."""
    shop_domain = shop_domain_from_host(request.headers.get("host"))
    if shop_domain is None:
        return JSONResponse({"errors": "Not Found"}, status_code=404)
    params = await _read_params(request)
    if params is None:
        return _oauth_error("invalid_request", "The request body is not valid JSON or form data.")
    config = state.config
    client_ok = secrets.compare_digest(
        params.get("client_id", "").encode(), config.client_id.encode()
    ) and secrets.compare_digest(
        params.get("client_secret", "").encode(), config.client_secret.encode()
    )
    if not client_ok:
        return _oauth_error("invalid_client", "Client credentials are invalid.", status=401)
    grant_type = params.get("grant_type", "")
    if grant_type == TOKEN_EXCHANGE_GRANT:
        return _token_exchange(state, shop_domain, params)
    if grant_type == "refresh_token":
        return _refresh(state, shop_domain, params)
    return _oauth_error(
        "unsupported_grant_type",
        f"grant_type must be {TOKEN_EXCHANGE_GRANT} or refresh_token, not {grant_type!r}.",
    )


# --- control routes -------------------------------------------------------------------------


def not_on_shop_host(request: Request) -> Response | None:
    """A 404 for sandbox-only routes reached through a shop's host, else None."""
    if shop_domain_from_host(request.headers.get("host")) is not None:
        return JSONResponse({"errors": "Not Found"}, status_code=404)
    return None


async def _json_body(request: Request) -> dict[str, Any] | Response:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        return JSONResponse({"error": "the body is not valid JSON"}, status_code=400)
    if not isinstance(body, dict):
        return JSONResponse({"error": "the body must be a JSON object"}, status_code=400)
    return body


def _shop_json(conn: sqlite3.Connection, domain: str) -> dict[str, Any]:
    row = conn.execute("SELECT * FROM shops WHERE domain = ?", (domain,)).fetchone()
    return {
        "id": row["id"],
        "gid": f"gid://shopify/Shop/{row['id']}",
        "domain": row["domain"],
        "name": row["name"],
        "email": row["email"],
        "currency_code": row["currency_code"],
        "plan_name": row["plan_name"],
        "app_installed": bool(row["app_installed"]),
        "created_at": row["created_at"],
    }


def shop_rest_payload(conn: sqlite3.Connection, domain: str) -> dict[str, Any]:
    """The REST ``Shop`` resource, as ``app/uninstalled`` carries it."""
    row = conn.execute("SELECT * FROM shops WHERE domain = ?", (domain,)).fetchone()
    currency = row["currency_code"]
    return {
        "id": row["id"],
        "name": row["name"],
        "email": row["email"],
        "domain": row["domain"],
        "province": None,
        "country": "US",
        "address1": None,
        "zip": None,
        "city": None,
        "source": None,
        "phone": None,
        "latitude": None,
        "longitude": None,
        "primary_locale": "en",
        "address2": None,
        "created_at": row["created_at"],
        "updated_at": row["created_at"],
        "country_code": "US",
        "country_name": "United States",
        "currency": currency,
        "customer_email": row["email"],
        "timezone": "(GMT+00:00) UTC",
        "iana_timezone": "UTC",
        "shop_owner": row["name"],
        "money_format": "${{amount}}" if currency == "USD" else "{{amount}}",
        "money_with_currency_format": f"${{{{amount}}}} {currency}",
        "weight_unit": "kg",
        "province_code": None,
        "taxes_included": False,
        "auto_configure_tax_inclusivity": None,
        "tax_shipping": None,
        "county_taxes": True,
        "plan_display_name": row["plan_name"],
        "plan_name": row["plan_name"].lower(),
        "has_discounts": False,
        "has_gift_cards": False,
        "myshopify_domain": row["domain"],
        "google_apps_domain": None,
        "google_apps_login_enabled": None,
        "money_in_emails_format": "${{amount}}",
        "money_with_currency_in_emails_format": f"${{{{amount}}}} {currency}",
        "eligible_for_payments": True,
        "requires_extra_payments_agreement": False,
        "password_enabled": True,
        "has_storefront": True,
        "finances": True,
        "primary_location_id": None,
        "checkout_api_supported": True,
        "multi_location_enabled": True,
        "setup_required": False,
        "pre_launch_enabled": False,
        "enabled_presentment_currencies": [currency],
        "marketing_sms_consent_enabled_at_checkout": False,
        "transactional_sms_disabled": False,
    }


def uninstall_app(conn: sqlite3.Connection, domain: str) -> int:
    """Uninstall the app from an existing shop, as Shopify does; returns the tokens revoked.

    Its subscriptions are cancelled, its tokens revoked, and ``app/uninstalled`` recorded.
    Uninstalling where the app is not installed changes nothing.
    """
    # billing_store sits in graphql_api, whose import chain reaches this module.
    from syncapp.sandbox.shopify.graphql_api import billing_store

    row = conn.execute("SELECT app_installed FROM shops WHERE domain = ?", (domain,)).fetchone()
    if row is None or not row["app_installed"]:
        return 0
    billing_store.cancel_all(conn, domain)
    conn.execute("UPDATE shops SET app_installed = 0 WHERE domain = ?", (domain,))
    revoked = tokens.revoke_app_tokens(conn, domain)
    record_webhook(
        conn, shop_domain=domain, topic="app/uninstalled", payload=shop_rest_payload(conn, domain)
    )
    return revoked


def _path_shop(request: Request) -> str | Response:
    try:
        return normalize_domain(str(request.path_params["shop"]))
    except ValueError as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)


def _control_shop(request: Request) -> str | Response:
    """The shop a control route names, or the refusal (shop hosts never reach control routes)."""
    if (refused := not_on_shop_host(request)) is not None:
        return refused
    return _path_shop(request)


def _unknown_shop(domain: str) -> JSONResponse:
    return JSONResponse(
        {"error": f"no shop {domain}; create it with POST /_sandbox/shops"}, status_code=404
    )


def routes(state: SandboxState) -> list[BaseRoute]:
    """The token endpoint and the ``/_sandbox/shops`` control routes."""

    async def token_endpoint(request: Request) -> Response:
        return await access_token_endpoint(state, request)

    async def create_shop(request: Request) -> Response:
        if (refused := not_on_shop_host(request)) is not None:
            return refused
        body = await _json_body(request)
        if isinstance(body, Response):
            return body
        try:
            domain = normalize_domain(str(body.get("domain", "")))
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        with state.db.transaction() as conn:
            existed = get_shop(conn, domain) is not None
            ensure_shop(
                conn,
                domain,
                name=body.get("name"),
                email=body.get("email"),
                currency_code=str(body.get("currency_code", "USD")),
                plan_name=str(body.get("plan_name", "Standard")),
            )
            if "installed" in body:
                conn.execute(
                    "UPDATE shops SET app_installed = ? WHERE domain = ?",
                    (1 if body["installed"] else 0, domain),
                )
            shop = _shop_json(conn, domain)
        return JSONResponse(shop, status_code=200 if existed else 201)

    async def id_token(request: Request) -> Response:
        domain = _control_shop(request)
        if isinstance(domain, Response):
            return domain
        body = await _json_body(request)
        if isinstance(body, Response):
            return body
        with state.db.transaction() as conn:
            if get_shop(conn, domain) is None:
                return _unknown_shop(domain)
        try:
            user_id = int(body.get("user_id", 1))
            lifetime = int(body.get("lifetime", 60))
        except (TypeError, ValueError):
            return JSONResponse({"error": "user_id and lifetime must be integers"}, 400)
        token = mint_id_token(state.config, domain, user_id=user_id, lifetime=lifetime)
        return JSONResponse({"id_token": token})

    async def custom_token(request: Request) -> Response:
        domain = _control_shop(request)
        if isinstance(domain, Response):
            return domain
        body = await _json_body(request)
        if isinstance(body, Response):
            return body
        scope = str(body.get("scope") or granted_scopes(state.config))
        with state.db.transaction() as conn:
            if get_shop(conn, domain) is None:
                return _unknown_shop(domain)
            token = tokens.issue_custom_token(conn, domain, scope)
        return JSONResponse({"access_token": token, "scope": scope})

    async def uninstall(request: Request) -> Response:
        domain = _control_shop(request)
        if isinstance(domain, Response):
            return domain
        with state.db.transaction() as conn:
            if get_shop(conn, domain) is None:
                return _unknown_shop(domain)
            revoked = uninstall_app(conn, domain)
        return JSONResponse({"domain": domain, "app_installed": False, "revoked_tokens": revoked})

    async def install(request: Request) -> Response:
        domain = _control_shop(request)
        if isinstance(domain, Response):
            return domain
        with state.db.transaction() as conn:
            if get_shop(conn, domain) is None:
                return _unknown_shop(domain)
            conn.execute("UPDATE shops SET app_installed = 1 WHERE domain = ?", (domain,))
            shop = _shop_json(conn, domain)
        return JSONResponse(shop)

    async def compliance(request: Request) -> Response:
        domain = _control_shop(request)
        if isinstance(domain, Response):
            return domain
        topic = COMPLIANCE_TOPICS.get(str(request.path_params["kind"]))
        if topic is None:
            return JSONResponse(
                {"error": f"unknown compliance topic; use one of {sorted(COMPLIANCE_TOPICS)}"},
                status_code=404,
            )
        body = await _json_body(request)
        if isinstance(body, Response):
            return body
        with state.db.transaction() as conn:
            shop = get_shop(conn, domain)
            if shop is None:
                return _unknown_shop(domain)
            try:
                payload = compliance_payload(topic, shop, body)
            except (TypeError, ValueError) as exc:
                return JSONResponse(
                    {"error": f"customer.id, orders and data_request_id must be integers: {exc}"},
                    status_code=400,
                )
            event_id = record_webhook(conn, shop_domain=domain, topic=topic, payload=payload)
        return JSONResponse({"topic": topic, "event_id": event_id, "payload": payload})

    return [
        Route("/admin/oauth/access_token", token_endpoint, methods=["POST"]),
        Route("/_sandbox/shops", create_shop, methods=["POST"]),
        Route("/_sandbox/shops/{shop}/id_token", id_token, methods=["POST"]),
        Route("/_sandbox/shops/{shop}/custom_token", custom_token, methods=["POST"]),
        Route("/_sandbox/shops/{shop}/uninstall", uninstall, methods=["POST"]),
        Route("/_sandbox/shops/{shop}/install", install, methods=["POST"]),
        Route("/_sandbox/shops/{shop}/compliance/{kind}", compliance, methods=["POST"]),
    ]


def compliance_payload(topic: str, shop: Shop, body: dict[str, Any]) -> dict[str, Any]:
    """A compliance webhook's payload; ``body`` may name the customer and orders."""
    payload: dict[str, Any] = {"shop_id": shop.id, "shop_domain": shop.domain}
    if topic == "shop/redact":
        return payload
    raw_customer = body.get("customer")
    given: dict[str, Any] = raw_customer if isinstance(raw_customer, dict) else {}
    customer_id = int(given.get("id", 1000 + shop.id))
    payload["customer"] = {
        "id": customer_id,
        "email": given.get("email", f"customer{customer_id}@example.com"),
        "phone": given.get("phone"),
    }
    orders = [int(o) for o in body.get("orders", [])]
    if topic == "customers/data_request":
        payload["orders_requested"] = orders
        payload["data_request"] = {"id": int(body.get("data_request_id", secrets.randbelow(10**9)))}
    else:
        payload["orders_to_redact"] = orders
    return payload
