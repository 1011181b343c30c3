"""Where the sandbox must behave like Shopify for a sync engine not to be fooled (issue 9).

Each test names the Shopify document, changelog entry or reference line it follows; the
reference lines are in ../shared/reference/sync-pitfalls.md (cited as "pitfalls §N").
"""

from __future__ import annotations

import json
import time
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


# ---- 1. productSet replaces metafields wholesale ------------------------------------------

METAFIELDS = """
query M($id: ID!) {
  product(id: $id) {
    metafields(first: 20) { nodes { namespace key value } }
    variants(first: 5) { nodes { id metafields(first: 20) { nodes { namespace key value } } } }
  }
}
"""


def _keys(connection: dict[str, Any]) -> set[tuple[str, str]]:
    return {(m["namespace"], m["key"]) for m in connection["nodes"]}


def test_product_set_deletes_metafields_it_does_not_list(sandbox: Sandbox) -> None:
    """productSet listing only the app's metafield deletes the merchant's others.

    Source: admin-graphql 2026-07 mutations/productSet (ProductSetUserError page): list fields
    "delete existing entries that aren't included", metafields among them (pitfalls §10); a
    variant input without ``metafields`` leaves that variant's metafields alone.
    """
    merchant = {"namespace": "custom", "key": "care", "type": "single_line_text_field"}
    variants = shirt_input()["variants"]
    variants[0]["metafields"] = [{**merchant, "value": "wash cold"}]
    variants[1]["metafields"] = [{**merchant, "value": "dry clean"}]
    product = create_shirt(sandbox, metafields=[{**merchant, "value": "cotton"}], variants=variants)
    ids = [v["id"] for v in product["variants"]["nodes"]]
    mine = {"namespace": "sync", "key": "crm_id", "type": "single_line_text_field", "value": "7"}
    second_input = shirt_input()["variants"]
    second_input[0] = {**second_input[0], "id": ids[0], "metafields": [mine]}
    second_input[1] = {**second_input[1], "id": ids[1]}  # no metafields field: unchanged
    sandbox.run(
        PRODUCT_SET,
        {
            "identifier": {"id": product["id"]},
            "input": {
                "metafields": [mine],
                "productOptions": shirt_input()["productOptions"],
                "variants": second_input,
            },
        },
    )
    data = sandbox.run(METAFIELDS, {"id": product["id"]})["product"]
    assert _keys(data["metafields"]) == {("sync", "crm_id")}
    first, second = data["variants"]["nodes"]
    assert _keys(first["metafields"]) == {("sync", "crm_id")}
    assert _keys(second["metafields"]) == {("custom", "care")}


def test_product_set_without_metafields_keeps_them(sandbox: Sandbox) -> None:
    """Fields left out of productSet are left unchanged (same productSet reference page)."""
    merchant = {"namespace": "custom", "key": "care", "type": "single_line_text_field"}
    product = create_shirt(sandbox, metafields=[{**merchant, "value": "cotton"}])
    sandbox.run(PRODUCT_SET, {"identifier": {"id": product["id"]}, "input": {"title": "New"}})
    data = sandbox.run(METAFIELDS, {"id": product["id"]})["product"]
    assert _keys(data["metafields"]) == {("custom", "care")}


# ---- 2. variants and productOptions travel together ----------------------------------------


def test_product_set_variants_without_options_on_an_existing_product_is_refused(
    sandbox: Sandbox,
) -> None:
    """On updates too, variants without productOptions is a userError and changes nothing.

    Source: shopify.dev/changelog/changes-to-variants-and-productoptions-fields-in-productsetinput
    (2024-07: "both present or both absent"; pitfalls §11).
    """
    product = create_shirt(sandbox)
    before = len(sandbox.outbox())
    variants = [
        {**v, "id": node["id"], "price": "1.00"}
        for v, node in zip(shirt_input()["variants"], product["variants"]["nodes"], strict=True)
    ]
    data = sandbox.run(
        PRODUCT_SET, {"identifier": {"id": product["id"]}, "input": {"variants": variants}}
    )
    assert data["productSet"]["product"] is None
    assert data["productSet"]["userErrors"] == [
        {
            "field": ["input", "productOptions"],
            "message": "Product options input is required when variants are given.",
            "code": "PRODUCT_OPTIONS_INPUT_MISSING",
        }
    ]
    assert len(sandbox.outbox()) == before
    data = sandbox.run(
        PRODUCT_SET,
        {
            "identifier": {"id": product["id"]},
            "input": {"productOptions": shirt_input()["productOptions"]},
        },
    )
    assert data["productSet"]["userErrors"][0]["code"] == "VARIANTS_INPUT_MISSING"


# ---- 3. input-array limits and dynamic cost of the variant bulk mutations -----------------

BULK_UPDATE = """
mutation U($p: ID!, $v: [ProductVariantsBulkInput!]!) {
  productVariantsBulkUpdate(productId: $p, variants: $v) {
    productVariants { id } userErrors { field message code }
  }
}"""


def test_variant_bulk_update_refuses_more_than_250_inputs(sandbox: Sandbox) -> None:
    """251 inputs (even copies of one variant) are refused and nothing changes.

    Source: shopify.dev/docs/api/usage/limits ("Input arguments that accept an array have a
    maximum size of 250 for all APIs"); changelog graphql-input-objects-limited-to-250-items.
    """
    product = create_shirt(sandbox)
    variant = product["variants"]["nodes"][0]
    before = len(sandbox.outbox())
    body = sandbox.gql(
        BULK_UPDATE, {"p": product["id"], "v": [{"id": variant["id"], "price": "1.00"}] * 251}
    )
    [error] = body["errors"]
    assert error["extensions"]["code"] == "MAX_INPUT_SIZE_EXCEEDED"
    assert error["message"] == (
        "The input array size of 251 is greater than the maximum allowed of 250."
    )
    assert error["path"] == ["productVariantsBulkUpdate", "variants"]
    assert "data" not in body
    assert len(sandbox.outbox()) == before
    ok = sandbox.gql(
        BULK_UPDATE, {"p": product["id"], "v": [{"id": variant["id"], "price": "1.00"}] * 250}
    )
    assert "errors" not in ok


def test_variant_bulk_mutations_cost_by_dynamic_complexity(sandbox: Sandbox) -> None:
    """10 + 0.2 per variant + 0.4 per variant metafield, rounded up.

    Source: shopify.dev/changelog/dynamic-complexity-for-productvariantsbulkcreate-and-
    productvariantsbulkupdate-mutations (2025-10-01). Rounding is not published: the sandbox
    rounds up (documented in cost.py).
    """
    product = create_shirt(sandbox)
    variant = product["variants"]["nodes"][0]
    metafield = {"namespace": "custom", "key": "k1", "type": "single_line_text_field", "value": "x"}
    inputs = [{"id": variant["id"], "price": "2.00", "metafields": [metafield]}] * 200
    body = sandbox.gql(BULK_UPDATE, {"p": product["id"], "v": inputs})
    # 10 + 200 * 0.2 + 200 * 0.4 = 130
    assert body["extensions"]["cost"]["requestedQueryCost"] == 130
    assert body["extensions"]["cost"]["actualQueryCost"] == 130
    body = sandbox.gql(BULK_UPDATE, {"p": product["id"], "v": [{"id": variant["id"]}] * 3})
    # 10 + 0.6 → 11
    assert body["extensions"]["cost"]["requestedQueryCost"] == 11
    create = """
    mutation C($p: ID!, $v: [ProductVariantsBulkInput!]!) {
      productVariantsBulkCreate(productId: $p, variants: $v) { userErrors { field message } }
    }"""
    inputs = [{"optionValues": [{"optionName": "Size", "name": f"X{i}"}]} for i in range(50)]
    body = sandbox.gql(create, {"p": product["id"], "v": inputs})
    assert body["extensions"]["cost"]["requestedQueryCost"] == 20


# ---- 9. prices finer than the currency ------------------------------------------------------


def test_price_with_more_decimals_than_the_currency_is_refused_loudly(sandbox: Sandbox) -> None:
    """ "19.999" for a USD shop is refused (NOT_IMPLEMENTED_IN_SANDBOX), not rounded to "20.00".

    Source: shopify.dev/docs/api/admin-graphql/latest/scalars/Money and Decimal ("arbitrary
    precision", example "29.999") document no rounding of a variant price to the currency's
    minor unit, and none was found in the changelog (issue 9, item 9: "if it cannot be found,
    refuse loudly"); ISO 4217 gives USD two decimal places.
    """
    variants = shirt_input()["variants"]
    variants[0]["price"] = "19.999"
    body = sandbox.gql(PRODUCT_SET, {"input": shirt_input(variants=variants)})
    assert body["data"] is None
    [error] = body["errors"]
    assert error["extensions"]["code"] == "NOT_IMPLEMENTED_IN_SANDBOX"
    assert "'19.999'" in error["message"]
    assert product_count(sandbox) == 0
    variants[0]["price"] = "19.990"  # trailing zeros are not extra precision
    product = create_shirt(sandbox, variants=variants)
    assert product["variants"]["nodes"][0]["price"] == "19.99"
    body = sandbox.gql(
        BULK_UPDATE,
        {
            "p": product["id"],
            "v": [{"id": product["variants"]["nodes"][1]["id"], "compareAtPrice": "5.001"}],
        },
    )
    assert body["data"] is None
    assert body["errors"][0]["extensions"]["code"] == "NOT_IMPLEMENTED_IN_SANDBOX"


# ---- 7. throttling by HTTP 429 --------------------------------------------------------------

FAULTS = "http://sandbox.test/_sandbox/graphql/faults"


def test_throttling_can_answer_429_with_retry_after_in_seconds(sandbox: Sandbox) -> None:
    """With the switch on, a throttled request gets HTTP 429 and ``Retry-After`` (seconds).

    Source: pitfalls §26-27 (Shopify/cli PR #8317 says 200; a community reply says 429, so
    handle both; Shopify/shopify-app-js#3364: Retry-After is seconds); shopify.dev/docs/api/
    usage/limits (REST answers 429 with Retry-After).
    """
    assert sandbox.client.post(FAULTS, json={"throttle_status": 429}).status_code == 200
    # 300 aliases of a 3-point shop selection: requested = actual = 900 (nothing refunded).
    selection = "shop { plan { displayName } primaryDomain { host } }"
    query = "query { " + " ".join(f"s{i}: {selection}" for i in range(300)) + " }"
    statuses = []
    for _ in range(4):  # the Standard bucket (2000 points, 100/s) is short on the third
        response = sandbox.client.post(
            "/admin/api/2026-10/graphql.json",
            json={"query": query},
            headers={"X-Shopify-Access-Token": "shpat_demo_token_0123456789"},
        )
        statuses.append(response.status_code)
        if response.status_code == 429:
            break
    assert statuses[-1] == 429, statuses
    assert response.json()["errors"][0]["extensions"]["code"] == "THROTTLED"
    wait = int(response.headers["Retry-After"])
    cost = response.json()["extensions"]["cost"]
    assert cost["requestedQueryCost"] == 900
    status = cost["throttleStatus"]
    assert wait >= (900 - status["currentlyAvailable"]) / status["restoreRate"]
    # Forced throttling of the next request, whatever the bucket holds.
    sandbox.client.post(FAULTS, json={"throttle_status": 429, "throttle_next": 1})
    cheap = sandbox.client.post(
        "/admin/api/2026-10/graphql.json",
        json={"query": "query { shop { name } }"},
        headers={"X-Shopify-Access-Token": "shpat_demo_token_0123456789"},
    )
    assert cheap.status_code == 429
    assert cheap.headers["Retry-After"] == "1"
    assert sandbox.client.get(FAULTS).json()["throttle_next"] == 0
    sandbox.client.delete(FAULTS)
    assert "errors" not in sandbox.gql("query { shop { name } }")


def test_graphql_faults_refuse_bad_values_and_shop_hosts(sandbox: Sandbox) -> None:
    """The control route is the sandbox's own: 404 on a shop host, 400 on a bad value."""
    assert sandbox.client.post(FAULTS, json={"throttle_status": 503}).status_code == 400
    assert sandbox.client.post(FAULTS, json={"nope": 1}).status_code == 400
    on_shop = sandbox.client.post("/_sandbox/graphql/faults", json={"throttle_status": 429})
    assert on_shop.status_code == 404
    assert sandbox.client.get(FAULTS).json()["throttle_status"] == 200


# ---- 5. bulk operations ----------------------------------------------------------------------

BULK_RUN = """
mutation($q: String!, $g: Boolean!) { bulkOperationRunQuery(query: $q, groupObjects: $g) {
  bulkOperation { id status } userErrors { field message code } } }
"""
BULK_QUERY = "{ products { edges { node { id variants { edges { node { id sku } } } } } } }"
BULK_NODE = """
query($id: ID!) { node(id: $id) { ... on BulkOperation {
  id status errorCode objectCount url partialDataUrl } } }
"""


def start_bulk(sandbox: Sandbox, *, grouped: bool = False) -> str:
    started = sandbox.gql(BULK_RUN, {"q": BULK_QUERY, "g": grouped})["data"]
    assert started["bulkOperationRunQuery"]["userErrors"] == []
    op_id: str = started["bulkOperationRunQuery"]["bulkOperation"]["id"]
    return op_id


def bulk_state(sandbox: Sandbox, op_id: str) -> dict[str, Any]:
    node: dict[str, Any] = sandbox.run(BULK_NODE, {"id": op_id})["node"]
    return node


def wait_bulk(sandbox: Sandbox, op_id: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        op = bulk_state(sandbox, op_id)
        if op["status"] not in ("CREATED", "RUNNING", "CANCELING"):
            return op
        time.sleep(0.02)
    raise AssertionError(f"bulk operation {op_id} did not finish within {timeout} s")


def bulk_lines(sandbox: Sandbox, url: str) -> list[dict[str, Any]]:
    response = sandbox.client.get(url.removeprefix("http://sandbox.test"))
    assert response.status_code == 200, response.text
    return [json.loads(line) for line in response.text.splitlines()]


def seed_shirts(sandbox: Sandbox, count: int) -> None:
    for index in range(count):
        variants = [{**v, "sku": f"{v['sku']}-{index}"} for v in shirt_input()["variants"]]
        create_shirt(sandbox, title=f"Shirt {index}", variants=variants)


def test_bulk_output_is_ungrouped_by_default_and_grouped_on_request(sandbox: Sandbox) -> None:
    """groupObjects false (the 2026-01+ default): lines interleave and a child may precede its
    parent; groupObjects true keeps each product's variants after it.

    Source: shopify.dev/changelog/bulk-operations-group-objects-default-changed-to-false;
    admin-graphql 2026-10 mutations/bulkOperationRunQuery (argument groupObjects, default false).
    """
    seed_shirts(sandbox, 3)
    ungrouped = bulk_lines(sandbox, wait_bulk(sandbox, start_bulk(sandbox))["url"])
    position = {line["id"]: index for index, line in enumerate(ungrouped)}
    assert any(
        position[line["__parentId"]] > index
        for index, line in enumerate(ungrouped)
        if "__parentId" in line
    )
    parents_in_order = [line["__parentId"] for line in ungrouped if "__parentId" in line]
    assert parents_in_order[0] != parents_in_order[1]  # interleaved across products
    grouped = bulk_lines(sandbox, wait_bulk(sandbox, start_bulk(sandbox, grouped=True))["url"])
    assert sorted(map(json.dumps, grouped)) == sorted(map(json.dumps, ungrouped))
    for index, line in enumerate(grouped):
        if "__parentId" in line:
            assert position_of(grouped, line["__parentId"]) < index


def position_of(lines: list[dict[str, Any]], gid: str) -> int:
    return next(index for index, line in enumerate(lines) if line["id"] == gid)


def test_bulk_fault_failed_timeout_leaves_partial_data(sandbox: Sandbox) -> None:
    """FAILED with errorCode TIMEOUT (or ACCESS_DENIED), url null, partialDataUrl readable.

    Source: admin-graphql 2026-10 objects/BulkOperation (partialDataUrl), enums/
    BulkOperationErrorCode (TIMEOUT: "partial or incomplete data"); pitfalls §24.
    """
    seed_shirts(sandbox, 4)
    for code in ("TIMEOUT", "ACCESS_DENIED"):
        sandbox.client.post(FAULTS, json={"bulk_outcome": f"FAILED_{code}"})
        op = wait_bulk(sandbox, start_bulk(sandbox))
        assert (op["status"], op["errorCode"], op["url"]) == ("FAILED", code, None)
        partial = bulk_lines(sandbox, op["partialDataUrl"])
        assert 0 < len(partial) < 12
    finishes = sandbox.outbox("bulk_operations/finish")
    assert [f["payload"]["status"] for f in finishes] == ["failed", "failed"]
    assert [f["payload"]["error_code"] for f in finishes] == ["timeout", "access_denied"]


def test_bulk_fault_canceled_and_slow_running(sandbox: Sandbox) -> None:
    """A slow operation is seen RUNNING and can be canceled; the CANCELED fault ends so alone.

    Source: admin-graphql 2026-10 enums/BulkOperationStatus (RUNNING, CANCELING, CANCELED);
    pitfalls §24 ("jobs can run for very long", airbytehq/airbyte#39499).
    """
    seed_shirts(sandbox, 1)
    sandbox.client.post(FAULTS, json={"bulk_running_ms": 60_000})
    op_id = start_bulk(sandbox)
    deadline = time.monotonic() + 10
    while bulk_state(sandbox, op_id)["status"] != "RUNNING":
        assert time.monotonic() < deadline
        time.sleep(0.02)
    cancel = "mutation($id: ID!) { bulkOperationCancel(id: $id) { userErrors { message } } }"
    assert sandbox.run(cancel, {"id": op_id})["bulkOperationCancel"]["userErrors"] == []
    assert wait_bulk(sandbox, op_id)["status"] == "CANCELED"
    sandbox.client.post(FAULTS, json={"bulk_outcome": "CANCELED"})
    op = wait_bulk(sandbox, start_bulk(sandbox))
    assert (op["status"], op["url"]) == ("CANCELED", None)


def test_bulk_result_url_expires(sandbox: Sandbox) -> None:
    """Past its lifetime the URL stops working and the operation reads EXPIRED.

    Source: bulkOperationRunQuery ("Results remain available for seven days after
    completion"); enums/BulkOperationStatus EXPIRED ("The bulk operation URL has expired").
    """
    seed_shirts(sandbox, 1)
    sandbox.client.post(FAULTS, json={"bulk_url_ttl_s": 0.3})
    op_id = start_bulk(sandbox)
    op = wait_bulk(sandbox, op_id)
    url = op["url"] or ""
    deadline = time.monotonic() + 10
    while op["status"] != "EXPIRED":
        assert op["status"] == "COMPLETED"
        assert time.monotonic() < deadline
        time.sleep(0.02)
        op = bulk_state(sandbox, op_id)
    expired = sandbox.client.get(url.removeprefix("http://sandbox.test"))
    assert expired.status_code == 400
    assert "ExpiredToken" in expired.text
