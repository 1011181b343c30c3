"""The templates catalogue the sandbox serves: a handful of funnel page templates, one or
more per page kind. Static data: the real catalogue is CTRwow's, read-only to partners."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

KINDS = ("landing", "upsell", "thankyou")
_UPDATED_AT = "2026-09-01T12:00:00Z"


@dataclass(frozen=True)
class Template:
    id: str
    name: str
    kind: str
    version: int
    description: str

    def to_json(self, public_url: str) -> dict[str, Any]:
        """The contract's ``Template``; previews are served by CTRwow itself."""
        return {
            "id": self.id,
            "name": self.name,
            "kind": self.kind,
            "version": self.version,
            "description": self.description,
            "preview_url": f"{public_url.rstrip('/')}/templates/{self.id}/preview",
            "updated_at": _UPDATED_AT,
        }


TEMPLATES: tuple[Template, ...] = (
    Template(
        "tpl_landing_classic",
        "Classic long-form landing",
        "landing",
        3,
        "Hero, benefits, testimonials and a 1-5 unit price table with the order form.",
    ),
    Template(
        "tpl_landing_video",
        "Video sales letter",
        "landing",
        2,
        "A video above the fold and a short checkout below it.",
    ),
    Template(
        "tpl_landing_listicle",
        "Listicle presell",
        "landing",
        1,
        "'7 reasons why' advertorial that links to the order page.",
    ),
    Template(
        "tpl_upsell_one_click",
        "One-click upsell",
        "upsell",
        4,
        "Single offer with Yes/No buttons; charges the saved card.",
    ),
    Template(
        "tpl_upsell_bundle",
        "Bundle upgrade",
        "upsell",
        1,
        "Offers 3 or 5 units at a per-unit discount.",
    ),
    Template(
        "tpl_thankyou_receipt",
        "Receipt thank-you",
        "thankyou",
        2,
        "Order summary with every related upsell order and the descriptor per charge.",
    ),
)


def find(template_id: str) -> Template | None:
    for template in TEMPLATES:
        if template.id == template_id:
            return template
    return None


def page(*, kind: str | None, after: str | None, limit: int) -> tuple[list[Template], str | None]:
    """One page of templates ordered by id, and the cursor of the next (None at the end)."""
    matching = sorted((t for t in TEMPLATES if kind is None or t.kind == kind), key=lambda t: t.id)
    if after is not None:
        matching = [t for t in matching if t.id > after]
    chunk = matching[:limit]
    next_cursor = chunk[-1].id if len(matching) > limit else None
    return chunk, next_cursor
