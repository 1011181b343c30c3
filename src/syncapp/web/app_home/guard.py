"""What an App Home request must satisfy beyond shopifyapp's verification. Pure checks.

* ``/app/api/*`` (App Bridge fetches) take the session token from ``Authorization: Bearer``
  only: a ``?id_token=`` in the query is a document load's and never authenticates a JSON
  route, so a link or a form on another site cannot carry one. Their state-changing routes
  also need ``Content-Type: application/json`` (a cross-site form or ``text/plain`` body is
  a "simple" request a browser sends without asking) and refuse a foreign ``Origin`` or
  ``Sec-Fetch-Site``.
* ID tokens must carry every claim Shopify puts in them (``exp``, ``nbf``, ``iat``, ``iss``,
  ``dest``, ``aud``, ``sub``) with ``iss`` on ``dest``'s host: shopifyapp only checks the
  signature, the time claims that happen to be present and ``aud``.
* ``/auth/patch-id-token`` (unauthenticated) gets a shop that is ``<name>.myshopify.com`` and
  a reload path on this app, or a 400; nothing else reaches its headers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import jwt

API_PREFIX = "/app/api/"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
REQUIRED_CLAIMS = ("exp", "nbf", "iat", "iss", "dest", "aud", "sub")
# Shopify's clock tolerance for ID tokens, as shopifyapp uses it.
LEEWAY_SECONDS = 10
SHOP_DOMAIN = re.compile(r"^[a-z0-9][a-z0-9-]{0,99}\.myshopify\.com$")
# A path on this app: one leading slash (not "//host"), no backslash, no control characters.
_RELOAD_PATH = re.compile(r"^/(?![/\\])[^\\\x00-\x20\x7f]*$")


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a request is refused: its HTTP status and the message for the caller."""

    status: int
    error: str


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of ``url``, lowercased, as a browser's ``Origin`` header."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def api_request_refusal(
    method: str, headers: Mapping[str, str], *, own_origin: str
) -> Refusal | None:
    """Why an ``/app/api/*`` request is refused before verification, or None.

    ``headers`` are the request's, with lowercase names (Starlette's ``Headers`` are).
    """
    unsafe = method.upper() in UNSAFE_METHODS
    if unsafe:
        origin = headers.get("origin")
        if origin is not None and origin.lower() != own_origin:
            return Refusal(403, "cross-origin requests are refused")
        site = headers.get("sec-fetch-site")
        if site is not None and site.lower() not in ("same-origin", "none"):
            return Refusal(403, "cross-site requests are refused")
    authorization = headers.get("authorization", "")
    if not authorization.startswith("Bearer ") or not authorization[7:].strip():
        return Refusal(401, "send the session token as 'Authorization: Bearer <ID token>'")
    return None


def json_body_refusal(method: str, headers: Mapping[str, str]) -> Refusal | None:
    """Why a verified ``/app/api/*`` request's body is refused (not JSON), or None."""
    if method.upper() not in UNSAFE_METHODS:
        return None
    media_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        return Refusal(415, "send a JSON body with 'Content-Type: application/json'")
    return None


def claims_refusal(token: str, *, secrets: Iterable[str], client_id: str) -> str | None:
    """Why a (signature-verified) ID token's claims are not acceptable, or None.

    Decoded again with PyJWT's ``require`` option: shopifyapp accepts tokens that lack the
    time claims or ``sub``. ``secrets`` are the current and the previous client secret.
    """
    last_error = "no client secret"
    for secret in secrets:
        try:
            claims = jwt.decode(
                token,
                secret,
                algorithms=["HS256"],
                audience=client_id,
                leeway=LEEWAY_SECONDS,
                options={"require": list(REQUIRED_CLAIMS)},
            )
        except jwt.InvalidSignatureError as exc:
            last_error = str(exc)
            continue
        except jwt.PyJWTError as exc:
            return str(exc)
        return _claims_shape_refusal(claims)
    return last_error


def _claims_shape_refusal(claims: Mapping[str, object]) -> str | None:
    dest, iss, sub = claims["dest"], claims["iss"], claims["sub"]
    if not isinstance(dest, str) or not isinstance(iss, str):
        return "dest and iss must be URLs"
    dest_parts, iss_parts = urlsplit(dest), urlsplit(iss)
    if dest_parts.scheme != "https" or not dest_parts.hostname:
        return "dest is not an https URL"
    if not SHOP_DOMAIN.match(dest_parts.hostname):
        return "dest is not a shop's myshopify.com domain"
    if iss_parts.scheme != "https" or iss_parts.hostname != dest_parts.hostname:
        return "iss is not the token's dest shop"
    if not isinstance(sub, str) or not sub.strip():
        return "sub (the user) is empty"
    return None


def patch_params_refusal(shop: str | None, reload_path: str | None) -> str | None:
    """Why ``/auth/patch-id-token``'s query is refused, or None."""
    if not shop or not SHOP_DOMAIN.match(shop):
        return "shop must be a <name>.myshopify.com domain"
    if not reload_path or not _RELOAD_PATH.match(reload_path):
        return "shopify-reload must be a path on this app"
    return None


def public_request_url(public_url: str, path: str, query: str) -> str:
    """The request's URL on the app's configured public address (never the Host header)."""
    base = public_url.rstrip("/")
    return f"{base}{path}?{query}" if query else f"{base}{path}"
