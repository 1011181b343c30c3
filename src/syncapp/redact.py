"""Credential redaction for anything that is logged: URLs, headers, free text.

Bearer credentials travel in places that end up in logs: the App Home's document load carries
the session token as ``?id_token=``, CTRwow's OAuth callback carries ``code`` and ``state``,
eManageCRM's sign-in links carry a one-time token in the path, and every API call an
``Authorization`` header. :func:`redact_text` masks them wherever they occur in a string;
:func:`redact_event` is the structlog processor (``syncapp.logging`` installs it for structlog
and the standard library's loggers alike, so uvicorn's access log and httpx's request lines
pass through it too). Pure functions, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, MutableMapping
from typing import Any

REDACTED = "[REDACTED]"

# Query parameters whose value is a credential, matched on the name (case-insensitive):
# exact names, and any name containing one of the fragments.
_SECRET_PARAMS = frozenset(
    {"code", "state", "hmac", "signature", "session", "sid", "jwt", "otp", "nonce", "ticket"}
)
_SECRET_FRAGMENTS = ("token", "secret", "password", "passwd", "key", "auth", "credential")
# Header (or log field) names whose whole value is a credential. Not "code" or "state":
# as log fields those name an outcome (``code="invalid_aud"``), not an OAuth value.
_SECRET_NAMES = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-shopify-access-token",
        "x-shopify-hmac-sha256",
        "x-csrf-token",
        "id_token",
        "access_token",
        "refresh_token",
        "client_secret",
        "password",
    }
)

_QUERY_PARAM = re.compile(r"(?P<lead>[?&;](?P<name>[A-Za-z0-9_.\-\[\]]+)=)(?P<value>[^&#\s\"'<>]*)")
# "Authorization: Bearer x", "Bearer x", "Basic x" in free text.
_SCHEME = re.compile(r"\b(?P<scheme>Bearer|Basic|Token)\s+(?P<value>[A-Za-z0-9._~+/=\-]{8,})")
# A JWT anywhere (three base64url segments, the first a JSON header "eyJ…").
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*")
# One-time tokens carried in a path segment (eManageCRM's /sso/<token>).
_PATH_TOKEN = re.compile(r"(?P<lead>/sso/)(?P<value>[^/?#\s\"']+)")


def _secret_param(name: str) -> bool:
    lowered = name.lower()
    return (
        lowered in _SECRET_PARAMS
        or lowered.endswith(("_code", "-code"))  # link_code, auth-code; over-masking is cheap
        or any(f in lowered for f in _SECRET_FRAGMENTS)
    )


def _mask_param(match: re.Match[str]) -> str:
    if match.group("value") and _secret_param(match.group("name")):
        return match.group("lead") + REDACTED
    return match.group(0)


def redact_text(text: str) -> str:
    """``text`` with every credential-looking part masked (URLs, bearer values, JWTs)."""
    # Cheap pre-checks: most log lines contain none of these and are returned untouched.
    if "=" in text:
        text = _QUERY_PARAM.sub(_mask_param, text)
    if "Bearer" in text or "Basic" in text or "Token" in text:
        text = _SCHEME.sub(lambda m: f"{m.group('scheme')} {REDACTED}", text)
    if "eyJ" in text:
        text = _JWT.sub(REDACTED, text)
    if "/sso/" in text:
        text = _PATH_TOKEN.sub(lambda m: m.group("lead") + REDACTED, text)
    return text


def redact_url(url: str) -> str:
    """A URL safe to log: credential query values and path tokens masked."""
    return redact_text(url)


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Headers safe to log: credential headers masked, the rest redacted as text."""
    return {
        k: REDACTED if k.lower() in _SECRET_NAMES else redact_text(v) for k, v in headers.items()
    }


# Anything redact_text would change contains one of these; one C-level search rules it out.
_TRIGGER = re.compile(r"=|Bearer|Basic|Token|eyJ|/sso/")


def _redact_value(key: str, value: Any) -> Any:
    if isinstance(value, str):
        if key in _SECRET_NAMES and value:
            return REDACTED
        # The hot path (a log line per webhook): most values contain no trigger at all.
        if _TRIGGER.search(value) is None:
            return value
        return redact_text(value)
    if isinstance(value, Mapping):
        return {k: _redact_value(str(k).lower(), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_redact_value(key, v) for v in value)
    return value


def redact_event(
    logger: Any, method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: mask credentials in every field of a log event.

    Covers the stdlib records structlog renders too: for those the message (``event``) is
    already formatted, so uvicorn's access line and httpx's ``HTTP Request: GET <url>`` are
    plain strings here. ``positional_args`` are masked as well for renderers that use them.
    """
    for key, value in event_dict.items():
        if value.__class__ is str:
            # The hot path (a log line per webhook): one C-level search rules a value out.
            if key not in _SECRET_NAMES and _TRIGGER.search(value) is None:
                continue
        elif isinstance(value, int | float | bool) or value is None:
            continue
        redacted = _redact_value(key, value)
        if redacted is not value:
            event_dict[key] = redacted
    return event_dict
