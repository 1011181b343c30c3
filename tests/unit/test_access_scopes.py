"""``shopify.app.toml`` requests exactly the access scopes shipped code needs: those the app's
Admin GraphQL documents need — derived here from the operations' fields and the types they
return, as Shopify's own 2026-10 schema states them (``requiredAccess``) — plus those its
webhook subscriptions need. A scope nothing uses is not requested; a feature adds its scopes
with the documents (or subscriptions) that need them.
"""

from __future__ import annotations

import gzip
import json
import re
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

from graphql import (
    FieldNode,
    GraphQLSchema,
    TypeInfo,
    TypeInfoVisitor,
    Visitor,
    get_named_type,
    parse,
    visit,
)

from syncapp.connectors.shopify.documents import document_names, load_document
from syncapp.sandbox.shopify.graphql_api.schema import admin_schema, schema_path

ROOT = Path(__file__).resolve().parents[2]
APP_TOML = ROOT / "shopify.app.toml"
_SCOPE = re.compile(r"`((?:read|write)_[a-z_]+)`")
# What each webhook topic needs granted, from Shopify's webhook topic reference; the app's
# topics must all be listed here, so that a new subscription brings its scope along.
TOPIC_SCOPES: dict[str, str | None] = {
    "products/create": "read_products",
    "products/update": "read_products",
    "products/delete": "read_products",
    "orders/create": "read_orders",
    "orders/updated": "read_orders",
    "orders/cancelled": "read_orders",
    "orders/fulfilled": "read_orders",
    "app/uninstalled": None,
    "app/scopes_update": None,
    "bulk_operations/finish": None,
    "app_subscriptions/update": None,
    "customers/data_request": None,
    "customers/redact": None,
    "shop/redact": None,
}


@cache
def _introspection() -> dict[str, dict[str, Any]]:
    with gzip.open(schema_path("2026-10"), "rt", encoding="utf-8") as fh:
        types = json.load(fh)["data"]["__schema"]["types"]
    return {t["name"]: t for t in types}


Requirement = frozenset[str]  # granting any one of these scopes satisfies it


def _requirements(required: str | None) -> list[Requirement]:
    """What a ``requiredAccess`` text asks for: each named scope, or one of several ("`a` or
    `b`", "Any of `a`, `b`"). A mix ("`a` as well as any of `b`, `c`") is not supported: the
    test fails rather than guess, until a document needs one."""
    if not required:
        return []
    named = _SCOPE.findall(required)
    assert "as well as" not in required, f"unsupported requirement: {required}"
    if len(named) > 1 and re.search(r"\bor\b|any of", required, re.IGNORECASE):
        return [frozenset(named)]
    return [frozenset({scope}) for scope in named]


def document_scopes(schema: GraphQLSchema, source: str) -> dict[Requirement, set[str]]:
    """What ``source`` needs granted, each with the ``Type.field`` (or type) that needs it."""
    raw = _introspection()
    info = TypeInfo(schema)
    needs: dict[Requirement, set[str]] = {}

    class Fields(Visitor):
        def enter_field(self, node: FieldNode, *_: object) -> None:
            parent, field = info.get_parent_type(), info.get_field_def()
            if parent is None or field is None:
                return
            entry = next(
                (f for f in raw[parent.name].get("fields") or [] if f["name"] == node.name.value),
                None,
            )
            if entry is not None:
                for need in _requirements(entry.get("requiredAccess")):
                    needs.setdefault(need, set()).add(f"{parent.name}.{node.name.value}")
            returned = get_named_type(field.type).name
            for need in _requirements(raw.get(returned, {}).get("requiredAccess")):
                needs.setdefault(need, set()).add(returned)

    visit(parse(source), TypeInfoVisitor(info, Fields()))
    return needs


def requested_scopes() -> set[str]:
    data = tomllib.loads(APP_TOML.read_text(encoding="utf-8"))
    return {s.strip() for s in data["access_scopes"]["scopes"].split(",") if s.strip()}


def subscribed_topics() -> set[str]:
    data = tomllib.loads(APP_TOML.read_text(encoding="utf-8"))
    topics: set[str] = set()
    for sub in data["webhooks"]["subscriptions"]:
        topics |= set(sub.get("topics", [])) | set(sub.get("compliance_topics", []))
    return topics


def needed_scopes() -> dict[Requirement, set[str]]:
    """Everything shipped code needs granted, with what needs it (documents, webhook topics)."""
    schema = admin_schema("2026-10")
    needs: dict[Requirement, set[str]] = {}
    for name in document_names():
        for need, users in document_scopes(schema, load_document(name)).items():
            needs.setdefault(need, set()).update(f"{name}.graphql: {u}" for u in users)
    for topic in subscribed_topics():
        assert topic in TOPIC_SCOPES, f"add the scope webhook topic {topic} needs to TOPIC_SCOPES"
        scope = TOPIC_SCOPES[topic]
        if scope is not None:
            needs.setdefault(frozenset({scope}), set()).add(f"webhook {topic}")
    return needs


def test_the_toml_requests_exactly_the_scopes_shipped_code_needs() -> None:
    needs = needed_scopes()
    requested = requested_scopes()
    missing = {" or ".join(sorted(n)): sorted(u) for n, u in needs.items() if not n & requested}
    unused = requested - set().union(*needs)
    assert not missing, f"needed but not requested: {missing}"
    assert not unused, f"requested but used by nothing: {sorted(unused)}"


def test_the_derivation_reads_the_schema_requirements() -> None:
    """A product mutation needs write_products (the field), reading products read_products
    (the type); the shop and billing documents need no scope; orders need one of three."""
    schema = admin_schema("2026-10")
    product_set = document_scopes(schema, load_document("product_set"))
    assert "Mutation.productSet" in product_set[frozenset({"write_products"})]
    assert "Product" in product_set[frozenset({"read_products"})]
    assert document_scopes(schema, load_document("shop")) == {}
    assert document_scopes(schema, load_document("app_subscription_create")) == {}
    orders = document_scopes(schema, "query { orders(first: 1) { nodes { id } } }")
    assert set(orders) == {frozenset({"read_orders", "read_marketplace_orders", "read_quick_sale"})}
