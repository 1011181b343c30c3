"""The CTRwow client: one method per contract operation over an injected ``httpx.AsyncClient``.

It holds no token state (the caller stores tokens, encrypted, and passes them in) and never
retries: every failure is raised as an error of :mod:`errors`, whose transient branch a caller
may retry (e.g. with stamina). The base URL is the only thing that differs between the real
CTRwow and the sandbox.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import httpx

from syncapp.connectors.ctrwow import oauth
from syncapp.connectors.ctrwow.errors import (
    CtrwowError,
    CtrwowPermanentError,
    CtrwowTransientError,
    error_from_response,
)
from syncapp.connectors.ctrwow.models import Account, ClientToken, Template, TemplateKind, TokenPair

DEFAULT_SCOPES = ("account:read", "templates:read", "sites:write", "publish")
PARTNER_SCOPE = "partner:accounts"


def _now() -> datetime:
    return datetime.now(UTC)


class CtrwowClient:
    """Calls CTRwow as the Sync App (a confidential, partner OAuth client)."""

    def __init__(
        self, http: httpx.AsyncClient, *, base_url: str, client_id: str, client_secret: str
    ) -> None:
        self._http = http
        self._base_url = base_url.rstrip("/")
        self._client_id = client_id
        self._client_secret = client_secret

    def __repr__(self) -> str:
        return f"CtrwowClient(base_url={self._base_url!r}, client_id={self._client_id!r})"

    # --- I/O helpers -----------------------------------------------------------------------

    async def _send(
        self,
        method: str,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        data: dict[str, str] | None = None,
        json: Any = None,
        params: dict[str, str] | None = None,
        auth: httpx.Auth | None = None,
    ) -> httpx.Response:
        try:
            response = await self._http.request(
                method,
                f"{self._base_url}{path}",
                headers=headers,
                data=data,
                json=json,
                params=params,
                auth=auth,
            )
        except httpx.TimeoutException as exc:
            raise CtrwowTransientError(f"CTRwow timed out on {method} {path}: {exc}") from exc
        except httpx.TransportError as exc:
            raise CtrwowTransientError(
                f"CTRwow could not be reached on {method} {path}: {exc}"
            ) from exc
        if response.is_success:
            return response
        raise error_from_response(response.status_code, response.headers, _json_or_none(response))

    def _client_auth(self) -> httpx.BasicAuth:
        # client_secret_basic; httpx encodes the id and secret as RFC 7617 requires.
        return httpx.BasicAuth(self._client_id, self._client_secret)

    async def _token_request(self, form: dict[str, str]) -> Any:
        response = await self._send("POST", "/oauth/token", data=form, auth=self._client_auth())
        return _json_body(response)

    @staticmethod
    def _bearer(access_token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {access_token}"}

    # --- OAuth -----------------------------------------------------------------------------

    def authorization_url(
        self,
        redirect_uri: str,
        state: str,
        code_verifier: str,
        scopes: Iterable[str] = DEFAULT_SCOPES,
        login_hint: str | None = None,
        *,
        account_name: str | None = None,
        shop_domain: str | None = None,
    ) -> str:
        """The URL to send the merchant to; CTRwow signs them in or creates their account."""
        return oauth.authorization_url(
            self._base_url,
            client_id=self._client_id,
            redirect_uri=redirect_uri,
            state=state,
            code_verifier=code_verifier,
            scopes=scopes,
            login_hint=login_hint,
            account_name=account_name,
            shop_domain=shop_domain,
        )

    async def exchange_code(self, code: str, redirect_uri: str, code_verifier: str) -> TokenPair:
        """Trade the code from the redirect for the account's first token pair."""
        body = await self._token_request(
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect_uri,
                "code_verifier": code_verifier,
            }
        )
        return oauth.parse_token_pair(body, now=_now())

    async def refresh(self, refresh_token: str, scopes: Iterable[str] | None = None) -> TokenPair:
        """Rotate: the answer holds a new access *and* refresh token; store both at once."""
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        if scopes is not None:
            form["scope"] = " ".join(scopes)
        return oauth.parse_token_pair(await self._token_request(form), now=_now())

    async def revoke(self, token: str, token_type_hint: str | None = None) -> None:
        """Revoke a token (RFC 7009); a refresh token takes its whole grant with it."""
        form = {"token": token}
        if token_type_hint is not None:
            form["token_type_hint"] = token_type_hint
        await self._send("POST", "/oauth/revoke", data=form, auth=self._client_auth())

    async def partner_token(self) -> ClientToken:
        """A partner access token (client_credentials) for the ``/partner/v1`` API."""
        body = await self._token_request(
            {"grant_type": "client_credentials", "scope": PARTNER_SCOPE}
        )
        return oauth.parse_client_token(body, now=_now())

    # --- partner provisioning --------------------------------------------------------------

    async def provision_account(
        self,
        external_ref: str,
        email: str,
        name: str,
        idempotency_key: str,
        *,
        scopes: Iterable[str] | None = None,
    ) -> tuple[Account, TokenPair]:
        """Create the merchant's account (``external_ref``: the shop domain) and its grant.

        Raises :class:`CtrwowConflict` when an account for ``external_ref`` exists already
        (``existing_id``; then use :meth:`issue_account_tokens`) or the email has a CTRwow
        account of its own (``code == "email_in_use"``; connect it with the OAuth flow).
        A replay with the same key returns the original account and pair.
        """
        partner = await self.partner_token()
        payload: dict[str, str] = {"external_ref": external_ref, "email": email, "name": name}
        if scopes is not None:
            payload["scope"] = " ".join(scopes)
        response = await self._send(
            "POST",
            "/partner/v1/accounts",
            headers={**self._bearer(partner.access_token), "Idempotency-Key": idempotency_key},
            json=payload,
        )
        body = _json_body(response)
        if not isinstance(body, dict):
            raise CtrwowPermanentError("CTRwow answered off-contract: not an object")
        return oauth.parse_account(body.get("account")), oauth.parse_token_pair(
            body.get("token"), now=_now()
        )

    async def issue_account_tokens(
        self, account_id: str, idempotency_key: str, *, scopes: Iterable[str] | None = None
    ) -> TokenPair:
        """A new grant for an account this app provisioned; earlier grants are revoked."""
        partner = await self.partner_token()
        payload = {"scope": " ".join(scopes)} if scopes is not None else {}
        response = await self._send(
            "POST",
            f"/partner/v1/accounts/{account_id}/tokens",
            headers={**self._bearer(partner.access_token), "Idempotency-Key": idempotency_key},
            json=payload,
        )
        return oauth.parse_token_pair(_json_body(response), now=_now())

    # --- API -------------------------------------------------------------------------------

    async def me(self, access_token: str) -> Account:
        """The account ``access_token`` acts for."""
        response = await self._send("GET", "/v1/me", headers=self._bearer(access_token))
        return oauth.parse_account(_json_body(response))

    async def list_templates(
        self, access_token: str, kind: TemplateKind | None = None
    ) -> list[Template]:
        """The whole templates catalogue (every page), optionally of one kind."""
        found: list[Template] = []
        cursor: str | None = None
        while True:
            params = {"limit": "100"}
            if kind is not None:
                params["kind"] = kind
            if cursor is not None:
                params["cursor"] = cursor
            response = await self._send(
                "GET", "/v1/templates", headers=self._bearer(access_token), params=params
            )
            body = _json_body(response)
            if not isinstance(body, dict) or not isinstance(body.get("data"), list):
                raise CtrwowPermanentError("CTRwow answered off-contract: no 'data' list")
            found.extend(oauth.parse_template(item) for item in body["data"])
            next_cursor = body.get("next_cursor")
            if not isinstance(next_cursor, str) or not next_cursor:
                return found
            cursor = next_cursor

    async def server_metadata(self) -> dict[str, Any]:
        """RFC 8414 metadata (to check the configured base URL is a CTRwow server)."""
        response = await self._send("GET", "/.well-known/oauth-authorization-server")
        body = _json_body(response)
        if not isinstance(body, dict):
            raise CtrwowPermanentError("CTRwow answered off-contract: metadata not an object")
        return body


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _json_body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError as exc:
        raise CtrwowPermanentError(
            f"CTRwow answered off-contract: HTTP {response.status_code} without a JSON body",
            status=response.status_code,
        ) from exc


__all__ = ["CtrwowClient", "CtrwowError"]
