"""Where the sandbox must behave like Shopify for a sync engine not to be fooled (issue 9).

Each test names the Shopify document, changelog entry or reference line it follows; the
reference lines are in ../shared/reference/sync-pitfalls.md (cited as "pitfalls §N").
"""

from __future__ import annotations

from typing import Any

from tests.unit.sandbox.conftest import PRODUCT_SET, Sandbox, shirt_input


def create_shirt(sandbox: Sandbox, **overrides: Any) -> dict[str, Any]:
    data = sandbox.run(PRODUCT_SET, {"input": shirt_input(**overrides)})
    assert data["productSet"]["userErrors"] == []
    product: dict[str, Any] = data["productSet"]["product"]
    return product


def product_count(sandbox: Sandbox) -> int:
    with sandbox.state.db.transaction() as conn:
        return int(conn.execute("SELECT COUNT(*) FROM sb_products").fetchone()[0])


# ---- 6. silent drops and partial commits ---------------------------------------------------

ITEM_QUERY = """
query Item($id: ID!) {
  productVariant(id: $id) { inventoryItem { tracked requiresShipping } }
}
"""


def test_tracked_false_and_requires_shipping_false_are_stored(sandbox: Sandbox) -> None:
    """InventoryItemInput.tracked / requiresShipping are read back as written.

    Source: admin-graphql 2026-10 input-objects/InventoryItemInput (``tracked``: "Whether the
    inventory item is tracked", ``requiresShipping``) and objects/InventoryItem.
    """
    variants = shirt_input()["variants"]
    variants[0]["inventoryItem"] = {"tracked": False, "requiresShipping": False}
    product = create_shirt(sandbox, variants=variants)
    first, second = product["variants"]["nodes"]
    item = sandbox.run(ITEM_QUERY, {"id": first["id"]})["productVariant"]["inventoryItem"]
    assert item == {"tracked": False, "requiresShipping": False}
    other = sandbox.run(ITEM_QUERY, {"id": second["id"]})["productVariant"]["inventoryItem"]
    assert other == {"tracked": True, "requiresShipping": True}
    update = """
    mutation U($p: ID!, $v: [ProductVariantsBulkInput!]!) {
      productVariantsBulkUpdate(productId: $p, variants: $v) { userErrors { field message } }
    }"""
    sandbox.run(
        update,
        {"p": product["id"], "v": [{"id": second["id"], "inventoryItem": {"tracked": False}}]},
    )
    other = sandbox.run(ITEM_QUERY, {"id": second["id"]})["productVariant"]["inventoryItem"]
    assert other == {"tracked": False, "requiresShipping": True}


def test_mutation_selecting_an_unimplemented_field_commits_nothing(sandbox: Sandbox) -> None:
    """A mutation whose answer would carry NOT_IMPLEMENTED_IN_SANDBOX is rolled back whole.

    Source: the sandbox's contract (docs/sandbox-fidelity.md, "refused loudly"): Shopify would
    have answered the field, so a committed change with ``product: null`` would make a client
    that retries on a null payload create the product twice (pitfalls §3, duplicates).
    """
    document = """
    mutation Set($input: ProductSetInput!) {
      productSet(input: $input, synchronous: true) {
        product { id variants(first: 5) { nodes { inventoryItem { harmonizedSystemCode } } } }
        userErrors { field message }
      }
    }"""
    body = sandbox.gql(document, {"input": shirt_input()})
    assert body["data"] is None
    assert body["errors"]
    for error in body["errors"]:
        assert error["extensions"]["code"] == "NOT_IMPLEMENTED_IN_SANDBOX"
        assert "rolled back" in error["message"]
    assert product_count(sandbox) == 0
    assert sandbox.outbox() == []
