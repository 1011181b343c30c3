"""Events the onboarding domain publishes (the CloudEvents types in ``docs/events.md``)."""

from __future__ import annotations

from syncapp.bus.envelope import EventType

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
