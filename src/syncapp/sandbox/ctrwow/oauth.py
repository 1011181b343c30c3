"""The OAuth 2.0 authorization server: RFC 8414 metadata, the authorization endpoint with its
sign-in / sign-up and consent page, the token endpoint and RFC 7009 revocation.

Profile (see ``docs/contracts/ctrwow.md``): authorization code with PKCE S256 only (``plain``
and a missing challenge are refused), confidential clients authenticated by
``client_secret_basic`` or ``client_secret_post``, redirect URIs matched exactly, rotating
refresh tokens (rules in :mod:`tokens`), ``client_credentials`` for partner clients only.

The consent page carries the authorization request as a signed, time-limited token, so what
the person allows is exactly what the client asked for; the form also carries the person's
credentials (sign-in) or the new account's details (sign-up), so no browser session is kept.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from syncapp.sandbox.ctrwow import accounts, tokens
from syncapp.sandbox.ctrwow.config import PARTNER_SCOPE, CtrwowClientRegistration
from syncapp.sandbox.ctrwow.state import SandboxState

FORM_LIFETIME = 1800
MIN_PASSWORD = 8
SCOPE_LABELS = {
    "account:read": "See your CTRwow account (name, email, plan)",
    "templates:read": "Browse your funnel templates",
    "sites:write": "Create and change your sites and pages",
    "publish": "Publish your sites",
}

_env = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"]),
)


def render(name: str, status: int = 200, **context: Any) -> HTMLResponse:
    """A page of the sandbox's HTML templates."""
    return HTMLResponse(_env.get_template(name).render(**context), status_code=status)


def rules(state: SandboxState) -> tokens.TokenRules:
    config = state.config
    return tokens.TokenRules(
        access_ttl=config.access_token_ttl,
        refresh_ttl=config.refresh_token_ttl,
        grace_seconds=config.refresh_grace_seconds,
        code_ttl=config.code_ttl,
    )


# --- metadata ------------------------------------------------------------------------------


def server_metadata(state: SandboxState) -> dict[str, Any]:
    """RFC 8414 metadata of this server."""
    issuer = state.config.issuer
    scopes = sorted({s for c in state.config.clients for s in c.scopes} | {PARTNER_SCOPE})
    return {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/oauth/authorize",
        "token_endpoint": f"{issuer}/oauth/token",
        "revocation_endpoint": f"{issuer}/oauth/revoke",
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "revocation_endpoint_auth_methods_supported": [
            "client_secret_basic",
            "client_secret_post",
        ],
        "scopes_supported": scopes,
        "authorization_response_iss_parameter_supported": True,
        "service_documentation": f"{issuer}/openapi.json",
    }


# --- errors and client authentication ------------------------------------------------------


def oauth_error(
    error: str, description: str, status: int = 400, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        {"error": error, "error_description": description},
        status_code=status,
        headers={"Cache-Control": "no-store", **(headers or {})},
    )


def _basic_credentials(header: str | None) -> tuple[str, str] | None:
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        raw = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, sep, secret = raw.partition(":")
    if not sep:
        return None
    # RFC 6749 §2.3.1: both parts are form-urlencoded before base64.
    return unquote(client_id.replace("+", " ")), unquote(secret.replace("+", " "))


def authenticate_client(
    state: SandboxState, request: Request, params: dict[str, str]
) -> CtrwowClientRegistration | JSONResponse:
    """The calling client (basic or post credentials), or the 400/401 answer to send."""
    header = request.headers.get("authorization")
    basic = _basic_credentials(header)
    if header and basic is None:
        return oauth_error("invalid_request", "The Authorization header is not valid Basic auth.")
    if basic is not None and "client_secret" in params:
        return oauth_error(
            "invalid_request", "Use one client authentication method, not Basic and form fields."
        )
    if basic is not None:
        client_id, secret = basic
    elif "client_secret" in params:
        client_id, secret = params.get("client_id", ""), params["client_secret"]
    else:
        return oauth_error(
            "invalid_client",
            "Client authentication is required (client_secret_basic or client_secret_post).",
            status=401,
            headers={"WWW-Authenticate": 'Basic realm="ctrwow"'},
        )
    registration = state.config.client(client_id)
    if registration is None or not secrets.compare_digest(
        registration.client_secret.encode(), secret.encode()
    ):
        return oauth_error(
            "invalid_client",
            "Unknown client or wrong client secret.",
            status=401,
            headers={"WWW-Authenticate": 'Basic realm="ctrwow"'} if basic else None,
        )
    return registration


async def read_form(request: Request) -> dict[str, str] | None:
    """The body's form fields (the OAuth endpoints take only form bodies), None otherwise."""
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("application/x-www-form-urlencoded"):
        return None
    form = await request.form()
    return {k: v for k, v in form.items() if isinstance(v, str)}


# --- the signed authorization request carried by the consent form --------------------------


def sign_request(state: SandboxState, params: dict[str, str]) -> str:
    payload = json.dumps({**params, "_iat": int(state.now())}, sort_keys=True).encode()
    body = base64.urlsafe_b64encode(payload).decode().rstrip("=")
    mac = hmac.new(state.form_secret.encode(), body.encode(), hashlib.sha256).hexdigest()
    return f"{body}.{mac}"


def verify_request(state: SandboxState, signed: str) -> dict[str, str] | None:
    body, _, mac = signed.partition(".")
    expected = hmac.new(state.form_secret.encode(), body.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, mac):
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (ValueError, binascii.Error):
        return None
    if not isinstance(data, dict) or state.now() - float(data.pop("_iat", 0)) > FORM_LIFETIME:
        return None
    return {str(k): str(v) for k, v in data.items()}


# --- authorization endpoint ----------------------------------------------------------------

_REQUEST_FIELDS = (
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "login_hint",
    "account_name",
    "shop_domain",
)


def _redirect(uri: str, params: dict[str, str], status: int) -> RedirectResponse:
    sep = "&" if "?" in uri else "?"
    return RedirectResponse(f"{uri}{sep}{urlencode(params)}", status_code=status)


def _redirect_error(
    state: SandboxState, auth: dict[str, str], error: str, description: str, status: int
) -> RedirectResponse:
    params = {"error": error, "error_description": description, "iss": state.config.issuer}
    if auth.get("state"):
        params["state"] = auth["state"]
    return _redirect(auth["redirect_uri"], params, status)


def _check_client(
    state: SandboxState, params: dict[str, str]
) -> CtrwowClientRegistration | HTMLResponse:
    registration = state.config.client(params.get("client_id", ""))
    if registration is None:
        return render(
            "error.html",
            400,
            title="Unknown application",
            message="This client_id is not registered.",
        )
    if params.get("redirect_uri", "") not in registration.redirect_uris:
        return render(
            "error.html",
            400,
            title="Redirect URI not registered",
            message="The redirect_uri must equal one of the application's registered URIs.",
        )
    return registration


def validate_authorization_request(
    state: SandboxState, query: dict[str, str]
) -> tuple[CtrwowClientRegistration, dict[str, str]] | Response:
    """The client and normalised request, or the page/redirect that refuses it."""
    checked = _check_client(state, query)
    if isinstance(checked, Response):
        return checked
    if query.get("response_type") != "code":
        return _redirect_error(
            state, query, "unsupported_response_type", "Only response_type=code is supported.", 302
        )
    method = query.get("code_challenge_method")
    challenge = query.get("code_challenge", "")
    if method != "S256":
        return _redirect_error(
            state,
            query,
            "invalid_request",
            "PKCE is required with code_challenge_method=S256 (plain is not accepted).",
            302,
        )
    if not tokens.CODE_CHALLENGE_PATTERN.match(challenge):
        return _redirect_error(
            state,
            query,
            "invalid_request",
            "code_challenge must be the 43-character BASE64URL SHA-256 of the code_verifier.",
            302,
        )
    try:
        scope = tokens.narrow_scope(query.get("scope"), list(checked.scopes))
    except tokens.ScopeRefused as exc:
        return _redirect_error(state, query, "invalid_scope", str(exc), 302)
    auth = {k: query[k] for k in _REQUEST_FIELDS if query.get(k)}
    auth["scope"] = scope
    return checked, auth


def _page(
    state: SandboxState,
    registration: CtrwowClientRegistration,
    auth: dict[str, str],
    *,
    screen: str,
    message: str = "",
    email: str = "",
    account_name: str = "",
) -> HTMLResponse:
    return render(
        "authorize.html",
        client_name=registration.display_name,
        scopes=[(s, SCOPE_LABELS.get(s, s)) for s in tokens.parse_scope(auth["scope"])],
        signed=sign_request(state, auth),
        screen=screen,
        message=message,
        email=email or auth.get("login_hint", ""),
        account_name=account_name or auth.get("account_name", ""),
        shop_domain=auth.get("shop_domain", ""),
        switch_url="/oauth/authorize?"
        + urlencode(
            {
                **{k: v for k, v in auth.items()},
                "response_type": "code",
                "code_challenge_method": "S256",
                "screen": "signup" if screen == "login" else "login",
            }
        ),
    )


async def authorize_page(state: SandboxState, request: Request) -> Response:
    query = dict(request.query_params)
    validated = validate_authorization_request(state, query)
    if isinstance(validated, Response):
        return validated
    registration, auth = validated
    screen = query.get("screen")
    if screen not in ("login", "signup"):
        hint = auth.get("login_hint")
        with state.db.transaction() as conn:
            existing = accounts.find_by_email(conn, hint) if hint else None
        screen = "login" if existing is not None else "signup"
    return _page(state, registration, auth, screen=screen)


async def authorize_decision(state: SandboxState, request: Request) -> Response:
    form = await read_form(request)
    if form is None:
        return render("error.html", 400, title="Bad request", message="Submit the consent form.")
    auth = verify_request(state, form.get("request", ""))
    if auth is None:
        return render(
            "error.html",
            400,
            title="This page has expired",
            message="Go back to the application and start connecting again.",
        )
    checked = _check_client(state, auth)
    if isinstance(checked, Response):
        return checked
    if form.get("decision") != "allow":
        return _redirect_error(state, auth, "access_denied", "The user did not allow access.", 303)
    screen = form.get("screen", "login")
    email = form.get("email", "").strip()
    password = form.get("password", "")
    now = state.now()
    with state.db.transaction() as conn:
        if screen == "signup":
            name = form.get("account_name", "").strip()
            problem = _signup_problem(email, name, password, form)
            if problem:
                return _page(
                    state,
                    checked,
                    auth,
                    screen="signup",
                    message=problem,
                    email=email,
                    account_name=name,
                )
            try:
                account = accounts.create_account(
                    conn,
                    name=name,
                    email=email,
                    now=now,
                    created_via="authorize",
                    password_hash=accounts.hash_password(
                        password, rounds=state.config.password_rounds
                    ),
                    external_ref=auth.get("shop_domain"),
                )
            except accounts.EmailTaken:
                return _page(
                    state,
                    checked,
                    auth,
                    screen="login",
                    message="An account with this email already exists: sign in instead.",
                    email=email,
                )
        else:
            found = accounts.authenticate(conn, email, password)
            if found is None:
                return _page(
                    state,
                    checked,
                    auth,
                    screen="login",
                    message="Wrong email or password.",
                    email=email,
                )
            account = found
        code = tokens.issue_code(
            conn,
            client_id=checked.client_id,
            account_id=account.id,
            redirect_uri=auth["redirect_uri"],
            scope=auth["scope"],
            code_challenge=auth["code_challenge"],
            now=now,
            rules=rules(state),
        )
    params = {"code": code, "iss": state.config.issuer}
    if auth.get("state"):
        params["state"] = auth["state"]
    return _redirect(auth["redirect_uri"], params, 303)


def _signup_problem(email: str, name: str, password: str, form: dict[str, str]) -> str:
    if "@" not in email or email.startswith("@") or email.endswith("@"):
        return "Enter a valid email address."
    if not name:
        return "Enter a name for the account (your store's name)."
    if len(password) < MIN_PASSWORD:
        return f"Choose a password of at least {MIN_PASSWORD} characters."
    if form.get("accept_terms") != "yes":
        return "Accept the terms of service to create the account."
    return ""


# --- token endpoint ------------------------------------------------------------------------


def _token_response(body: dict[str, Any], now: float) -> JSONResponse:
    return JSONResponse(
        tokens.public_body(body, now), headers={"Cache-Control": "no-store", "Pragma": "no-cache"}
    )


async def token_endpoint(state: SandboxState, request: Request) -> Response:
    params = await read_form(request)
    if params is None:
        return oauth_error(
            "invalid_request", "Send the parameters as application/x-www-form-urlencoded."
        )
    client = authenticate_client(state, request, params)
    if isinstance(client, Response):
        return client
    now = state.now()
    # Refusals are answered from inside the transaction: a refused reuse must still commit
    # the revocation it caused.
    with state.db.transaction() as conn:
        try:
            return _grant(state, conn, client, params, now)
        except tokens.GrantRefused as exc:
            return oauth_error("invalid_grant", str(exc))
        except tokens.ScopeRefused as exc:
            return oauth_error("invalid_scope", str(exc))


def _grant(
    state: SandboxState,
    conn: sqlite3.Connection,
    client: CtrwowClientRegistration,
    params: dict[str, str],
    now: float,
) -> Response:
    grant_type = params.get("grant_type", "")
    if grant_type == "authorization_code":
        missing = [p for p in ("code", "redirect_uri", "code_verifier") if not params.get(p)]
        if missing:
            return oauth_error("invalid_request", f"Missing: {', '.join(missing)}.")
        body = tokens.redeem_code(
            conn,
            client_id=client.client_id,
            code=params["code"],
            redirect_uri=params["redirect_uri"],
            code_verifier=params["code_verifier"],
            now=now,
            rules=rules(state),
        )
        return _token_response(body, now)
    if grant_type == "refresh_token":
        if not params.get("refresh_token"):
            return oauth_error("invalid_request", "Missing: refresh_token.")
        body = tokens.refresh(
            conn,
            client_id=client.client_id,
            refresh_token=params["refresh_token"],
            scope=params.get("scope"),
            now=now,
            rules=rules(state),
        )
        return _token_response(body, now)
    if grant_type == "client_credentials":
        if not client.partner:
            return oauth_error(
                "unauthorized_client", "Only partner clients may use the client_credentials grant."
            )
        scope = tokens.narrow_scope(params.get("scope"), [PARTNER_SCOPE])
        body = tokens.issue_client_token(
            conn,
            client_id=client.client_id,
            scope=scope,
            now=now,
            ttl=state.config.access_token_ttl,
        )
        return _token_response({**body, "_issued_at": now}, now)
    return oauth_error(
        "unsupported_grant_type",
        "grant_type must be authorization_code, refresh_token or client_credentials.",
    )


async def revoke_endpoint(state: SandboxState, request: Request) -> Response:
    params = await read_form(request)
    if params is None:
        return oauth_error(
            "invalid_request", "Send the parameters as application/x-www-form-urlencoded."
        )
    client = authenticate_client(state, request, params)
    if isinstance(client, Response):
        return client
    token = params.get("token")
    if not token:
        return oauth_error("invalid_request", "Missing: token.")
    with state.db.transaction() as conn:
        tokens.revoke_token(
            conn,
            client_id=client.client_id,
            token=token,
            hint=params.get("token_type_hint"),
            now=state.now(),
        )
    return Response(status_code=200, headers={"Cache-Control": "no-store"})


def routes(state: SandboxState) -> list[BaseRoute]:
    async def metadata(request: Request) -> Response:
        return JSONResponse(server_metadata(state))

    async def authorize_get(request: Request) -> Response:
        return await authorize_page(state, request)

    async def authorize_post(request: Request) -> Response:
        return await authorize_decision(state, request)

    async def token(request: Request) -> Response:
        return await token_endpoint(state, request)

    async def revoke(request: Request) -> Response:
        return await revoke_endpoint(state, request)

    async def authorize(request: Request) -> Response:
        # One route for both methods: two routes on one path made Starlette's 405 (e.g. to
        # OPTIONS) list only the first one's methods in Allow.
        if request.method == "POST":
            return await authorize_post(request)
        return await authorize_get(request)

    return [
        Route("/.well-known/oauth-authorization-server", metadata, methods=["GET"]),
        Route("/oauth/authorize", authorize, methods=["GET", "POST"]),
        Route("/oauth/token", token, methods=["POST"]),
        Route("/oauth/revoke", revoke, methods=["POST"]),
    ]
