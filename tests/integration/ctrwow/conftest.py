"""Fixtures for the CTRwow sandbox and connector tests: the sandbox served by uvicorn on a free
127.0.0.1 port, a client whose every answer is checked against the contract, and helpers that
drive the browser side of the authorization flow over HTTP."""

from __future__ import annotations

import base64
import hashlib
import html
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from starlette.applications import Starlette

from syncapp.sandbox.ctrwow import CtrwowClientRegistration, CtrwowSandboxConfig, create_app
from tests.integration.ctrwow.contract import ContractChecker
from tests.integration.sandbox.conftest import serve

APP_ID = "syncapp-partner"
APP_SECRET = "ctw_secret_7c1f0a9d3e5b48f2a6c0d9e1b3f5a7c9"
OTHER_ID = "other-app"
OTHER_SECRET = "ctw_secret_0000aaaabbbbccccddddeeeeffff1111"
REDIRECT_URI = "http://127.0.0.1:8000/ctrwow/callback"
OTHER_REDIRECT = "http://127.0.0.1:8000/other/callback"
VERIFIER = "v" * 20 + "-._~" + "0123456789abcdefghijklmnop"  # 50 chars, RFC 7636 alphabet


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def make_config(tmp_path: Path, **overrides: Any) -> CtrwowSandboxConfig:
    values: dict[str, Any] = {
        "database_path": tmp_path / "ctrwow.db",
        "clients": (
            CtrwowClientRegistration(
                APP_ID, APP_SECRET, (REDIRECT_URI,), partner=True, name="Sync App"
            ),
            CtrwowClientRegistration(OTHER_ID, OTHER_SECRET, (OTHER_REDIRECT,)),
        ),
        "password_rounds": 1000,
    }
    values.update(overrides)
    return CtrwowSandboxConfig(**values)


@dataclass
class RunningCtrwow:
    """The served sandbox: ``http`` checks every answer against the contract."""

    base_url: str
    app: Starlette
    http: httpx.Client
    control: httpx.Client
    checker: ContractChecker

    def advance(self, seconds: float) -> None:
        assert self.control.post("/_sandbox/clock", json={"advance": seconds}).status_code == 200

    def grants(self, account_id: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self.control.get(
            "/_sandbox/grants", params={"account_id": account_id}
        ).json()["grants"]
        return found

    def authorize_query(self, **overrides: str | None) -> dict[str, str]:
        params: dict[str, str | None] = {
            "response_type": "code",
            "client_id": APP_ID,
            "redirect_uri": REDIRECT_URI,
            "scope": "account:read templates:read",
            "state": "st-123",
            "code_challenge": s256(VERIFIER),
            "code_challenge_method": "S256",
        }
        params.update(overrides)
        return {k: v for k, v in params.items() if v is not None}

    def open_consent(self, **overrides: str | None) -> httpx.Response:
        return self.http.get("/oauth/authorize", params=self.authorize_query(**overrides))

    def submit(self, page: httpx.Response, **fields: str) -> httpx.Response:
        """Post the consent form of ``page`` with ``fields`` (decision defaults to allow)."""
        form = hidden_fields(page.text)
        form.setdefault("decision", "allow")
        form.update(fields)
        return self.http.post(
            "/oauth/authorize",
            content=urlencode(form),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )

    def sign_up(self, email: str = "owner@demo.example", **overrides: str | None) -> str:
        """Create an account through the consent page; returns the code from the redirect."""
        page = self.open_consent(login_hint=email, account_name="Demo Store", **overrides)
        assert page.status_code == 200, page.text
        done = self.submit(page, password="correct horse", accept_terms="yes")
        assert done.status_code == 303, done.text
        return redirect_params(done)["code"]

    def token(self, form: dict[str, str], *, auth: tuple[str, str] | None = None) -> httpx.Response:
        return self.http.post("/oauth/token", data=form, auth=auth or (APP_ID, APP_SECRET))

    def exchange(self, code: str, **overrides: str) -> httpx.Response:
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": VERIFIER,
        }
        form.update(overrides)
        return self.token(form)

    def refresh(self, refresh_token: str) -> httpx.Response:
        return self.token({"grant_type": "refresh_token", "refresh_token": refresh_token})

    def connected(self, email: str = "owner@demo.example") -> dict[str, Any]:
        """A fresh account connected through the full flow; returns the token response."""
        response = self.exchange(self.sign_up(email))
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def partner_token(self) -> str:
        response = self.token({"grant_type": "client_credentials", "scope": "partner:accounts"})
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])

    def me(self, access_token: str) -> httpx.Response:
        return self.http.get("/v1/me", headers={"Authorization": f"Bearer {access_token}"})


def hidden_fields(page: str) -> dict[str, str]:
    """What a browser submits of the consent form as filled in: hidden and prefilled inputs."""
    return {
        name: html.unescape(value)
        for name, value in re.findall(
            r'<input (?:id="\w+" )?type="(?:hidden|text|email)" name="(\w+)" value="([^"]*)"', page
        )
    }


def redirect_params(response: httpx.Response) -> dict[str, str]:
    """The query parameters of a redirect's Location."""
    location = response.headers["location"]
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


@contextmanager
def running(config: CtrwowSandboxConfig) -> Iterator[RunningCtrwow]:
    """Serve a sandbox built from ``config`` until the block ends."""
    checker = ContractChecker()
    app = create_app(config)
    with (
        serve(app) as base_url,
        httpx.Client(
            base_url=base_url, timeout=10, event_hooks={"response": [checker.check]}
        ) as http,
        httpx.Client(base_url=base_url, timeout=10) as control,
    ):
        yield RunningCtrwow(base_url=base_url, app=app, http=http, control=control, checker=checker)


@pytest.fixture
def ctrwow(tmp_path: Path) -> Iterator[RunningCtrwow]:
    """A fresh CTRwow sandbox served over HTTP."""
    with running(make_config(tmp_path)) as sandbox:
        yield sandbox
