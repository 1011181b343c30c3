"""Shopify global ids (``gid://shopify/Product/123``) and the legacy numeric ids inside them."""

from __future__ import annotations

import re

_GID = re.compile(r"^gid://shopify/([A-Za-z]+)/(\d+)(?:\?.*)?$")


def gid(kind: str, legacy_id: int) -> str:
    """``gid("Product", 1)`` → ``"gid://shopify/Product/1"``."""
    return f"gid://shopify/{kind}/{legacy_id}"


def parse_gid(value: str) -> tuple[str, int] | None:
    """``(kind, legacy id)`` of a gid, or None when ``value`` is not a Shopify gid."""
    match = _GID.match(value.strip())
    if match is None:
        return None
    return match.group(1), int(match.group(2))


def legacy_id(value: str, kind: str) -> int | None:
    """The numeric id in a gid of ``kind``; None when it is not one."""
    parsed = parse_gid(value)
    if parsed is None or parsed[0] != kind:
        return None
    return parsed[1]
