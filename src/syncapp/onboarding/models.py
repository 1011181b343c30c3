"""Tables of the sign-up: the shop's onboarding job, one row per step of it, and what the sign-up
produced — the shop's eManageCRM account (ids as plain columns) and its CTRwow account. CTRwow
tokens are in the vault (``credentials``: provider ``ctrwow``, names ``access_token`` and
``refresh_token``), never here.

The tables are registered on the shared ``Base.metadata`` (:mod:`syncapp.schema` imports
this module) and created by revisions 0100 and 0300 (``ctrwow_authorizations``).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from syncapp.store.models import Base, BigId, utcnow


class OnboardingJob(Base):
    """Work to do for a shop after install; ``kind='signup'`` is the eManageCRM/CTRwow sign-up.

    Install creates (or, on reinstall, resets) one ``signup`` row per shop with status
    ``pending``; uninstall sets pending rows to ``cancelled``. The onboarding engine claims
    ``pending`` rows, moves them through ``running`` to ``done`` or ``failed`` and counts
    ``attempts`` with ``last_error``. Sign-up must be idempotent: a reinstall runs it again.
    """

    __tablename__ = "onboarding_jobs"
    __table_args__ = (
        UniqueConstraint("shop_id", "kind"),
        Index("ix_onboarding_jobs_status_id", "status", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32), default="signup")
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    # syncapp.onboarding (revision 0100): not before this time (retry backoff; NULL means now),
    # the runner's lease (a crashed runner's job is claimed again once it runs out), and the
    # merchant's request to link their dedicated eManageCRM subscription (its link code is in
    # the vault: provider 'emanage', name 'link_code'). Steps are rows of onboarding_steps.
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    locked_by: Mapped[str | None] = mapped_column(String(128))
    emanage_subscription_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )


class OnboardingStep(Base):
    """One step of an onboarding job (``emanage_account``, ``emanage_user``, ``ctrwow_account``).

    ``status``: pending → running → done | failed | needs_merchant, or back to pending with
    ``next_attempt_at`` after a transient failure. A row found ``running`` by a runner that holds
    the job's lease was interrupted (its runner died) and is run again with the same key.
    ``generation`` is part of the idempotency key: it changes only when a new request must be
    sent (a new run after failure, a new link request), never for a retry.
    ``last_error`` is written for the merchant; ``result_id`` is the object the step produced.
    """

    __tablename__ = "onboarding_steps"
    __table_args__ = (UniqueConstraint("job_id", "step"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("onboarding_jobs.id", ondelete="CASCADE"))
    step: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    generation: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)
    result_id: Mapped[str | None] = mapped_column(String(64))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )


class EmanageAccount(Base):
    """The shop's eManageCRM account: a shared-instance tenant or a linked dedicated one.

    ``cid`` is the ``X_CID`` live pages send and ``websales_api_url`` where they send it
    (per account: dedicated subscriptions have their own Web Sales host).
    """

    __tablename__ = "emanage_accounts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"), unique=True)
    # Indexed: an eManageCRM notification names its account, and the receiver finds the shop.
    account_id: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # shared | dedicated
    cid: Mapped[str] = mapped_column(String(64))
    websales_api_url: Mapped[str] = mapped_column(String(512))
    subscription_id: Mapped[str | None] = mapped_column(String(64))
    owner_user_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )


class CtrwowAccount(Base):
    """The shop's CTRwow account; its tokens are in the vault.

    ``refresh_locked_until``/``refresh_locked_by`` are the lease that keeps one token refresh
    in flight per shop across processes (:mod:`syncapp.onboarding.tokens`).
    """

    __tablename__ = "ctrwow_accounts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"), unique=True)
    account_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str | None] = mapped_column(String(255))  # as CTRwow names the account
    scopes: Mapped[str | None] = mapped_column(Text)
    refresh_locked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    refresh_locked_by: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )


class CtrwowAuthorization(Base):
    """A pending "Connect your CTRwow account" (OAuth authorization code + PKCE) of a shop.

    ``state_hash`` is the SHA-256 of the ``state`` sent to CTRwow (the state itself is never
    stored); ``verifier_ciphertext`` the PKCE code verifier, encrypted by the vault. A row is
    deleted when its callback consumes it (single use) and refused after ``expires_at``.
    """

    __tablename__ = "ctrwow_authorizations"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    shop_id: Mapped[int] = mapped_column(ForeignKey("shops.id", ondelete="CASCADE"), index=True)
    state_hash: Mapped[str] = mapped_column(String(64), unique=True)
    verifier_ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
