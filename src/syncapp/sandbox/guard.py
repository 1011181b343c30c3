"""The sandboxes' browser-facing defences, one pure ASGI middleware shared by all three.

A developer running ``make run`` has the sandboxes on 127.0.0.1; any web page they visit can
make their browser send requests there. So, on each sandbox:

* **control routes** (``/_sandbox/*``: create shops, mint ID tokens, uninstall, fire
  compliance webhooks, inject faults) refuse a state-changing request that a browser sent
  from another origin (``Origin`` or ``Sec-Fetch-Site`` says so), and a "simple" request
  (``text/plain``, form or multipart body — what a page may send cross-site without a CORS
  preflight) that does not prove it came from the sandbox's own pages. Tests and scripts
  send JSON (or nothing) without ``Origin`` and pass;
* **pages** (the admin, the CRM, the sign-in form: ``page_prefixes``) refuse a
  state-changing request from another origin; their forms carry CSRF tokens as well;
* every response gets a ``Content-Security-Policy`` (a page's own, when it sets one) and
  ``X-Content-Type-Options: nosniff``, so whatever a page echoes cannot run as script.

"Own origin" is the sandbox's configured public URL, or ``http://<Host>`` when ``Host`` is a
loopback name (a DNS-rebinding page has its own name in ``Host`` and is refused). ``Origin:
null`` (a form on a ``no-referrer`` page) passes only with ``Sec-Fetch-Site: same-origin``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# The content types a cross-site page can send without a CORS preflight.
SIMPLE_CONTENT_TYPES = frozenset(
    {"text/plain", "application/x-www-form-urlencoded", "multipart/form-data"}
)
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
DEFAULT_CSP = (
    "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:;"
    " object-src 'none'; base-uri 'none'"
)


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


@dataclass(frozen=True, slots=True)
class CrossSite:
    """Why a request is refused as cross-site (for the 403's body)."""

    reason: str


def cross_site_refusal(
    method: str, headers: Headers, *, public_url: str, control: bool
) -> CrossSite | None:
    """Why a request to a guarded route is refused, or None. Pure.

    ``control`` adds the rule for routes without CSRF tokens: a simple body needs a
    same-origin ``Origin`` or ``Sec-Fetch-Site``.
    """
    if method.upper() not in UNSAFE_METHODS:
        return None
    own = {_origin(public_url)}
    host = headers.get("host", "")
    hostname = urlsplit(f"http://{host}").hostname if host else None
    if hostname in LOOPBACK_HOSTS:
        own.add(f"http://{host}".lower())
    origin = headers.get("origin")
    site = headers.get("sec-fetch-site")
    if origin == "null":
        # A form posted from a page with "Referrer-Policy: no-referrer" (the CRM's, the
        # sign-in's) carries "Origin: null"; so does a sandboxed frame on any site. Only the
        # browser's Sec-Fetch-Site tells them apart.
        if site is None or site.lower() != "same-origin":
            return CrossSite("an opaque origin is refused unless Sec-Fetch-Site is same-origin")
    elif origin is not None and origin.lower() not in own:
        return CrossSite(f"requests from {origin} are refused")
    if site is not None and site.lower() not in ("same-origin", "none"):
        return CrossSite(f"{site} requests are refused")
    if control and origin is None and site is None:
        media_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if media_type in SIMPLE_CONTENT_TYPES:
            return CrossSite(
                f"a {media_type} body needs a same-origin Origin; send JSON to control routes"
            )
    return None


class SandboxGuard:
    """Cross-site refusal on guarded routes and security headers on every response."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        public_url: str,
        control_prefixes: Iterable[str] = ("/_sandbox/",),
        page_prefixes: Iterable[str] = (),
        csp: str = DEFAULT_CSP,
    ) -> None:
        self.app = app
        self.public_url = public_url
        self.control_prefixes = tuple(control_prefixes)
        self.page_prefixes = tuple(page_prefixes)
        self.csp = csp.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        control = path.startswith(self.control_prefixes)
        if control or path.startswith(self.page_prefixes):
            refusal = cross_site_refusal(
                scope["method"], Headers(scope=scope), public_url=self.public_url, control=control
            )
            if refusal is not None:
                await self._refuse(refusal, send)
                return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {name.lower() for name, _ in headers}
                if b"content-security-policy" not in names:
                    headers.append((b"content-security-policy", self.csp))
                if b"x-content-type-options" not in names:
                    headers.append((b"x-content-type-options", b"nosniff"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)

    async def _refuse(self, refusal: CrossSite, send: Send) -> None:
        # JSON (with nosniff), not HTML: what is echoed of the request cannot become markup.
        body = json.dumps({"error": "cross-site request refused", "reason": refusal.reason})
        raw = body.encode()
        await send(
            {
                "type": "http.response.start",
                "status": 403,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(raw)).encode()),
                    (b"content-security-policy", self.csp),
                    (b"x-content-type-options", b"nosniff"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": raw})
