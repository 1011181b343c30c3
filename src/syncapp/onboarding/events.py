"""Events the onboarding domain publishes (the CloudEvents types in ``docs/events.md``)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from syncapp.bus.envelope import EventType
from syncapp.bus.interface import APP
from syncapp.bus.models import InboundEvent
from syncapp.bus.outbox import new_event, publish
from syncapp.onboarding.models import OnboardingJob
from syncapp.store.locking import locked_transaction
from syncapp.store.models import Shop

SIGNUP_REQUESTED = EventType(
    "com.emanagecrm.syncapp.signup.requested.v1",
    "The shop's eManageCRM/CTRwow sign-up is due (install, reinstall, reset, a link request).",
    {
        "type": "object",
        "required": ["shop_id", "shop_domain"],
        "properties": {
            "shop_id": {"type": "integer", "minimum": 1},
            "shop_domain": {"type": "string", "pattern": r"^[a-z0-9][a-z0-9-]*\.myshopify\.com$"},
            "reason": {"type": "string"},
        },
        "additionalProperties": False,
    },
)

APP_EVENTS = (SIGNUP_REQUESTED,)


def request_signup(session: Session, *, shop_id: int, shop_domain: str, reason: str) -> None:
    """Publish ``signup.requested`` for the shop, in ``session``'s transaction (the one that
    made its sign-up job due): the bus's consumer runs the sign-up once it commits."""
    publish(
        session,
        new_event(
            SIGNUP_REQUESTED,
            shop_domain=shop_domain,
            obj="signup",
            data={"shop_id": shop_id, "shop_domain": shop_domain, "reason": reason},
        ),
    )


def request_signup_of(session: Session, *, shop_id: int, reason: str) -> None:
    """:func:`request_signup` for a shop known by its id."""
    domain = session.scalar(select(Shop.domain).where(Shop.id == shop_id))
    if domain is not None:
        request_signup(session, shop_id=shop_id, shop_domain=domain, reason=reason)


def request_due_signups(sessions: sessionmaker[Session]) -> int:
    """Publish ``signup.requested`` for every sign-up job that is due but has no such event
    waiting (jobs queued before the bus carried them, or by a path that did not publish);
    returns how many. The worker runs this at start and with each pruning."""
    waiting = select(InboundEvent.shop_domain).where(
        InboundEvent.source == APP,
        InboundEvent.topic == SIGNUP_REQUESTED.name,
        InboundEvent.status.in_(("pending", "processing")),
    )
    with locked_transaction(sessions) as session:
        rows = session.execute(
            select(Shop.id, Shop.domain)
            .join(OnboardingJob, OnboardingJob.shop_id == Shop.id)
            .where(
                OnboardingJob.kind == "signup",
                OnboardingJob.status.in_(("pending", "running")),
                Shop.domain.not_in(waiting),
            )
        ).all()
        for shop_id, domain in rows:
            request_signup(session, shop_id=shop_id, shop_domain=domain, reason="sweep")
    return len(rows)
