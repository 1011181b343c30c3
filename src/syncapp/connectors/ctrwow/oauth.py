"""Pure parts of the CTRwow OAuth profile, app side: PKCE (RFC 7636, S256 only), the
authorization URL, and turning CTRwow's JSON answers into models. No I/O here."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from urllib.parse import urlencode

from authlib.oauth2.rfc7636 import create_s256_code_challenge

from syncapp.connectors.ctrwow.errors import CtrwowPermanentError
from syncapp.connectors.ctrwow.models import (
    Account,
    ClientToken,
    Template,
    TemplateKind,
    TokenPair,
)

CODE_VERIFIER_PATTERN = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")
TEMPLATE_KINDS = ("landing", "upsell", "thankyou")


def new_code_verifier() -> str:
    """A fresh PKCE code verifier: 64 URL-safe characters (256 bits of entropy)."""
    return secrets.token_urlsafe(48)


def code_challenge(code_verifier: str) -> str:
    """The S256 challenge of ``code_verifier``; refuses a verifier RFC 7636 does not allow."""
    if not CODE_VERIFIER_PATTERN.match(code_verifier):
        raise ValueError("a PKCE code_verifier is 43-128 characters of [A-Za-z0-9-._~]")
    # Authlib's RFC 7636 helper (its stub is untyped): the same the CTRwow sandbox checks with.
    challenge: str = create_s256_code_challenge(code_verifier)  # type: ignore[no-untyped-call]
    return challenge


def authorization_url(
    base_url: str,
    *,
    client_id: str,
    redirect_uri: str,
    state: str,
    code_verifier: str,
    scopes: Iterable[str],
    login_hint: str | None = None,
    account_name: str | None = None,
    shop_domain: str | None = None,
) -> str:
    """Where to send the merchant's browser to connect (or create) their CTRwow account."""
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "scope": " ".join(scopes),
        "state": state,
        "code_challenge": code_challenge(code_verifier),
        "code_challenge_method": "S256",
    }
    extras = {"login_hint": login_hint, "account_name": account_name, "shop_domain": shop_domain}
    params.update({k: v for k, v in extras.items() if v})
    return f"{base_url.rstrip('/')}/oauth/authorize?{urlencode(params)}"


def _off_contract(what: str) -> CtrwowPermanentError:
    return CtrwowPermanentError(f"CTRwow answered off-contract: {what}", code="off_contract")


def _str(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise _off_contract(f"'{key}' missing or not a string")
    return value


def _int(data: dict[str, Any], key: str) -> int:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _off_contract(f"'{key}' missing or not an integer")
    return value


def _datetime(data: dict[str, Any], key: str) -> datetime:
    raw = _str(data, key)
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError as exc:
        raise _off_contract(f"'{key}' is not a date-time: {raw!r}") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _object(body: Any, what: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise _off_contract(f"{what} is not a JSON object")
    return body


def parse_token_pair(body: Any, *, now: datetime) -> TokenPair:
    """A token response that must carry a refresh token (code, refresh, partner grants)."""
    data = _object(body, "the token response")
    if str(data.get("token_type", "")).lower() != "bearer":
        raise _off_contract("token_type is not Bearer")
    refresh_in = data.get("refresh_token_expires_in")
    account_id = data.get("account_id")
    return TokenPair(
        access_token=_str(data, "access_token"),
        refresh_token=_str(data, "refresh_token"),
        expires_at=now + timedelta(seconds=_int(data, "expires_in")),
        scope=frozenset(str(data.get("scope", "")).split()),
        account_id=account_id if isinstance(account_id, str) else None,
        refresh_expires_at=(
            now + timedelta(seconds=refresh_in)
            if isinstance(refresh_in, int) and not isinstance(refresh_in, bool)
            else None
        ),
    )


def parse_client_token(body: Any, *, now: datetime) -> ClientToken:
    data = _object(body, "the token response")
    return ClientToken(
        access_token=_str(data, "access_token"),
        expires_at=now + timedelta(seconds=_int(data, "expires_in")),
        scope=frozenset(str(data.get("scope", "")).split()),
    )


def parse_account(body: Any) -> Account:
    data = _object(body, "the account")
    external_ref = data.get("external_ref")
    return Account(
        id=_str(data, "id"),
        name=_str(data, "name"),
        email=_str(data, "email"),
        plan=_str(data, "plan"),
        created_at=_datetime(data, "created_at"),
        external_ref=external_ref if isinstance(external_ref, str) else None,
    )


def parse_template(body: Any) -> Template:
    data = _object(body, "a template")
    kind = _str(data, "kind")
    if kind not in TEMPLATE_KINDS:
        raise _off_contract(f"unknown template kind {kind!r}")
    description = data.get("description")
    return Template(
        id=_str(data, "id"),
        name=_str(data, "name"),
        kind=cast(TemplateKind, kind),
        version=_int(data, "version"),
        preview_url=_str(data, "preview_url"),
        updated_at=_datetime(data, "updated_at"),
        description=description if isinstance(description, str) else "",
    )
