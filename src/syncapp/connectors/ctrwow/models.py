"""What the CTRwow connector returns: tokens, the account, templates. Tokens are masked in
``repr`` so they never reach a log by accident."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

TemplateKind = Literal["landing", "upsell", "thankyou"]


@dataclass(frozen=True)
class TokenPair:
    """An access token and the rotating refresh token issued with it.

    ``expires_at`` is when the access token stops working (computed from ``expires_in`` at
    the moment the answer arrived); refresh before it. ``scope`` is what was granted.
    """

    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_at: datetime
    scope: frozenset[str]
    account_id: str | None = None
    refresh_expires_at: datetime | None = None


@dataclass(frozen=True)
class ClientToken:
    """A partner (client_credentials) access token: acts for the app itself, not an account."""

    access_token: str = field(repr=False)
    expires_at: datetime
    scope: frozenset[str]


@dataclass(frozen=True)
class Account:
    """A CTRwow account (``GET /v1/me``)."""

    id: str
    name: str
    email: str
    plan: str
    created_at: datetime
    external_ref: str | None = None


@dataclass(frozen=True)
class Template:
    """A funnel page template of CTRwow's catalogue."""

    id: str
    name: str
    kind: TemplateKind
    version: int
    preview_url: str
    updated_at: datetime
    description: str = ""
