"""Product mutations of the sandbox's Admin GraphQL: state changes, userErrors, webhooks."""

from __future__ import annotations

from typing import Any

from tests.unit.sandbox.conftest import PRODUCT_SET, SHOP, Sandbox, shirt_input


def create_shirt(sandbox: Sandbox, **overrides: Any) -> dict[str, Any]:
    data = sandbox.run(PRODUCT_SET, {"input": shirt_input(**overrides)})
    assert data["productSet"]["userErrors"] == []
    product: dict[str, Any] = data["productSet"]["product"]
    return product


def test_product_set_creates_product_with_options_and_variants(sandbox: Sandbox) -> None:
    """productSet without an id creates the product, its options and priced variants."""
    product = create_shirt(sandbox)
    assert product["id"].startswith("gid://shopify/Product/")
    assert int(product["id"].rsplit("/", 1)[1]) > 10**12
    assert product["handle"] == "red-shirt"
    assert product["tags"] == ["cotton", "summer"]
    assert product["options"] == [{"name": "Size", "position": 1, "values": ["S", "M"]}]
    variants = product["variants"]["nodes"]
    assert [(v["title"], v["sku"], v["price"], v["compareAtPrice"]) for v in variants] == [
        ("S", "RS-S", "19.99", "25.00"),
        ("M", "RS-M", "21.00", None),
    ]
    assert variants[0]["selectedOptions"] == [{"name": "Size", "value": "S"}]


def test_product_set_create_records_a_rest_shaped_products_create_webhook(
    sandbox: Sandbox,
) -> None:
    """The create fires products/create whose payload has Shopify's REST shape."""
    product = create_shirt(sandbox)
    [event] = sandbox.outbox("products/create")
    payload = event["payload"]
    assert event["shop"] == SHOP
    assert payload["admin_graphql_api_id"] == product["id"]
    assert payload["id"] == int(product["id"].rsplit("/", 1)[1])
    assert payload["tags"] == "cotton, summer"
    assert payload["status"] == "active"
    assert payload["images"] == []
    assert payload["image"] is None
    assert payload["media"] == []
    assert payload["options"][0]["values"] == ["S", "M"]
    assert payload["options"][0]["product_id"] == payload["id"]
    variant = payload["variants"][0]
    assert variant["price"] == "19.99"
    assert variant["compare_at_price"] == "25.00"
    assert variant["option1"] == "S"
    assert variant["option2"] is None
    assert variant["admin_graphql_api_id"].startswith("gid://shopify/ProductVariant/")
    assert {v["admin_graphql_api_id"] for v in payload["variant_gids"]} == {
        v["id"] for v in product["variants"]["nodes"]
    }
    expected_keys = {
        "body_html",
        "vendor",
        "product_type",
        "created_at",
        "handle",
        "updated_at",
        "published_at",
        "template_suffix",
        "published_scope",
    }
    assert expected_keys <= set(payload)


def test_product_set_with_id_replaces_variants_and_fires_update(sandbox: Sandbox) -> None:
    """productSet on an existing product replaces its variant set and fires products/update."""
    product = create_shirt(sandbox)
    keep = product["variants"]["nodes"][0]
    data = sandbox.run(
        PRODUCT_SET,
        {
            "identifier": {"id": product["id"]},
            "input": {
                "title": "Red Shirt v2",
                "productOptions": [{"name": "Size", "values": [{"name": "S"}, {"name": "L"}]}],
                "variants": [
                    {
                        "id": keep["id"],
                        "optionValues": [{"optionName": "Size", "name": "S"}],
                        "price": "18.00",
                    },
                    {"optionValues": [{"optionName": "Size", "name": "L"}], "price": "23.00"},
                ],
            },
        },
    )
    assert data["productSet"]["userErrors"] == []
    updated = data["productSet"]["product"]
    assert updated["title"] == "Red Shirt v2"
    assert updated["handle"] == "red-shirt"
    nodes = updated["variants"]["nodes"]
    assert [(v["title"], v["price"]) for v in nodes] == [("S", "18.00"), ("L", "23.00")]
    assert nodes[0]["id"] == keep["id"]
    event = sandbox.outbox("products/update")[-1]  # the first follows products/create
    assert [v["title"] for v in event["payload"]["variants"]] == ["S", "L"]


def test_product_set_reports_unknown_option_value_as_user_error(sandbox: Sandbox) -> None:
    """A variant naming a value its option does not declare is a userError, not a crash."""
    bad = shirt_input(
        variants=[
            {"optionValues": [{"optionName": "Size", "name": "XL"}], "price": "1.00"},
        ]
    )
    data = sandbox.run(PRODUCT_SET, {"input": bad})
    assert data["productSet"]["product"] is None
    [error] = data["productSet"]["userErrors"]
    assert error["field"] == ["input", "variants", "0", "optionValues", "0"]
    assert error["code"] == "OPTION_VALUE_DOES_NOT_EXIST"
    assert sandbox.outbox() == []


def test_product_set_reports_negative_price_and_blank_title(sandbox: Sandbox) -> None:
    """Bad scalar input gives one userError per problem, with field paths, and no write."""
    bad = shirt_input(
        title="  ",
        variants=[
            {"optionValues": [{"optionName": "Size", "name": "S"}], "price": "-1"},
            {"optionValues": [{"optionName": "Size", "name": "M"}], "price": "2"},
        ],
    )
    errors = sandbox.run(PRODUCT_SET, {"input": bad})["productSet"]["userErrors"]
    fields = [e["field"] for e in errors]
    assert ["input", "title"] in fields
    assert ["input", "variants", "0", "price"] in fields
    assert sandbox.run("{ products(first: 5) { nodes { id } } }")["products"]["nodes"] == []


def test_product_set_rejects_more_than_three_options(sandbox: Sandbox) -> None:
    """Shopify allows three options per product; a fourth is OPTIONS_OVER_LIMIT."""
    options = [{"name": n, "values": [{"name": "x"}]} for n in ("A", "B", "C", "D")]
    errors = sandbox.run(PRODUCT_SET, {"input": shirt_input(productOptions=options)})["productSet"][
        "userErrors"
    ]
    assert errors[0]["code"] == "OPTIONS_OVER_LIMIT"


def test_product_set_for_missing_product_is_a_user_error(sandbox: Sandbox) -> None:
    """An identifier naming no product answers PRODUCT_DOES_NOT_EXIST."""
    data = sandbox.run(
        PRODUCT_SET, {"identifier": {"id": "gid://shopify/Product/1"}, "input": {"title": "x"}}
    )
    assert data["productSet"]["userErrors"] == [
        {
            "field": ["identifier", "id"],
            "message": "Product does not exist",
            "code": "PRODUCT_DOES_NOT_EXIST",
        }
    ]


def test_product_create_makes_default_variant_and_stores_metafield(sandbox: Sandbox) -> None:
    """productCreate without options gets Shopify's Default Title variant and its metafields."""
    data = sandbox.run(
        """
      mutation($product: ProductCreateInput!) {
        productCreate(product: $product) {
          product { id handle hasOnlyDefaultVariant
            variants(first: 5) { nodes { title price } }
            metafield(namespace: "syncapp", key: "origin") { value type } }
          userErrors { field message }
        }
      }""",
        {
            "product": {
                "title": "Mug",
                "metafields": [
                    {
                        "namespace": "syncapp",
                        "key": "origin",
                        "type": "single_line_text_field",
                        "value": "op-42",
                    }
                ],
            }
        },
    )
    product = data["productCreate"]["product"]
    assert product["hasOnlyDefaultVariant"] is True
    assert product["variants"]["nodes"] == [{"title": "Default Title", "price": "0.00"}]
    assert product["metafield"] == {"value": "op-42", "type": "single_line_text_field"}
    assert [e["topic"] for e in sandbox.outbox()] == ["products/create", "products/update"]


def test_product_create_with_taken_handle_is_a_user_error(sandbox: Sandbox) -> None:
    """An explicit handle another product has is refused with Shopify's message."""
    create_shirt(sandbox)
    data = sandbox.run("""
      mutation { productCreate(product: {title: "Other", handle: "red-shirt"}) {
        product { id } userErrors { field message } } }""")
    assert data["productCreate"]["userErrors"] == [
        {
            "field": ["handle"],
            "message": "Handle 'red-shirt' already in use. Please provide a new handle.",
        }
    ]


def test_product_create_derives_a_unique_handle_from_a_repeated_title(sandbox: Sandbox) -> None:
    """A second product with the same title gets the handle with a -1 suffix."""
    create_shirt(sandbox)
    data = sandbox.run(
        'mutation { productCreate(product: {title: "Red Shirt"}) {'
        " product { handle } userErrors { message } } }"
    )
    assert data["productCreate"]["product"]["handle"] == "red-shirt-1"


def test_product_update_changes_fields_bumps_updated_at_and_fires_update(
    sandbox: Sandbox,
) -> None:
    """productUpdate sets the given fields, upserts metafields and fires products/update."""
    product = create_shirt(sandbox)
    with sandbox.state.db.transaction() as conn:
        conn.execute("UPDATE sb_products SET updated_at = '2020-01-01T00:00:00Z'")
    data = sandbox.run(
        """
      mutation($p: ProductUpdateInput!) { productUpdate(product: $p) {
        product { title status updatedAt tags
          metafield(namespace: "syncapp", key: "origin") { value } }
        userErrors { field message } } }""",
        {
            "p": {
                "id": product["id"],
                "title": "Blue Shirt",
                "status": "ARCHIVED",
                "tags": ["x"],
                "metafields": [
                    {
                        "namespace": "syncapp",
                        "key": "origin",
                        "type": "single_line_text_field",
                        "value": "op-7",
                    }
                ],
            }
        },
    )
    updated = data["productUpdate"]["product"]
    assert updated["title"] == "Blue Shirt"
    assert updated["status"] == "ARCHIVED"
    assert updated["updatedAt"] > "2020-01-01T00:00:00Z"
    assert updated["metafield"] == {"value": "op-7"}
    event = sandbox.outbox("products/update")[-1]  # the first follows products/create
    assert event["payload"]["title"] == "Blue Shirt"
    assert event["payload"]["status"] == "archived"
    assert event["payload"]["tags"] == "x"


def test_product_update_of_missing_product_is_a_user_error(sandbox: Sandbox) -> None:
    """Updating a product that does not exist answers a userError on id."""
    data = sandbox.run(
        'mutation { productUpdate(product: {id: "gid://shopify/Product/9",'
        ' title: "x"}) { product { id } userErrors { field message } } }'
    )
    assert data["productUpdate"] == {
        "product": None,
        "userErrors": [{"field": ["id"], "message": "Product does not exist"}],
    }


def test_product_delete_removes_product_and_fires_delete_with_id_only(sandbox: Sandbox) -> None:
    """productDelete removes the product and its variants; products/delete carries {id}."""
    product = create_shirt(sandbox)
    variant_id = product["variants"]["nodes"][0]["id"]
    data = sandbox.run(
        "mutation($id: ID!) { productDelete(input: {id: $id}) {"
        " deletedProductId userErrors { message } } }",
        {"id": product["id"]},
    )
    assert data["productDelete"] == {"deletedProductId": product["id"], "userErrors": []}
    gone = sandbox.run(
        "query($a: ID!, $b: ID!) { product(id: $a) { id } productVariant(id: $b) { id } }",
        {"a": product["id"], "b": variant_id},
    )
    assert gone == {"product": None, "productVariant": None}
    [event] = sandbox.outbox("products/delete")
    assert event["payload"] == {"id": int(product["id"].rsplit("/", 1)[1])}


def test_variants_bulk_update_changes_prices_and_fires_product_update(sandbox: Sandbox) -> None:
    """productVariantsBulkUpdate sets price and compare-at price and fires products/update."""
    product = create_shirt(sandbox)
    first, second = product["variants"]["nodes"]
    data = sandbox.run(
        """
      mutation($pid: ID!, $v: [ProductVariantsBulkInput!]!) {
        productVariantsBulkUpdate(productId: $pid, variants: $v) {
          productVariants { id price compareAtPrice sku }
          userErrors { field message code } } }""",
        {
            "pid": product["id"],
            "v": [
                {
                    "id": first["id"],
                    "price": "9.5",
                    "compareAtPrice": None,
                    "inventoryItem": {"sku": "NEW-S"},
                },
                {"id": second["id"], "compareAtPrice": "30"},
            ],
        },
    )
    result = data["productVariantsBulkUpdate"]
    assert result["userErrors"] == []
    assert result["productVariants"] == [
        {"id": first["id"], "price": "9.50", "compareAtPrice": None, "sku": "NEW-S"},
        {"id": second["id"], "price": "21.00", "compareAtPrice": "30.00", "sku": "RS-M"},
    ]
    event = sandbox.outbox("products/update")[-1]  # the first follows products/create
    assert [v["price"] for v in event["payload"]["variants"]] == ["9.50", "21.00"]


def test_variants_bulk_update_reports_bad_variant_and_applies_nothing(sandbox: Sandbox) -> None:
    """An unknown variant id or a negative price is a userError and nothing is written."""
    product = create_shirt(sandbox)
    first = product["variants"]["nodes"][0]
    data = sandbox.run(
        """
      mutation($pid: ID!, $v: [ProductVariantsBulkInput!]!) {
        productVariantsBulkUpdate(productId: $pid, variants: $v) {
          productVariants { id } userErrors { field message code } } }""",
        {
            "pid": product["id"],
            "v": [
                {"id": first["id"], "price": "-3"},
                {"id": "gid://shopify/ProductVariant/1", "price": "3"},
            ],
        },
    )
    errors = data["productVariantsBulkUpdate"]["userErrors"]
    assert [(e["field"], e["code"]) for e in errors] == [
        (["variants", "0", "price"], "INVALID_INPUT"),
        (["variants", "1", "id"], "PRODUCT_VARIANT_DOES_NOT_EXIST"),
    ]
    price = sandbox.run(
        "query($id: ID!) { productVariant(id: $id) { price } }", {"id": first["id"]}
    )
    assert price == {"productVariant": {"price": "19.99"}}
    assert len(sandbox.outbox("products/update")) == 1  # only the one following the create


def test_variants_bulk_create_replaces_the_standalone_default_variant(sandbox: Sandbox) -> None:
    """Creating variants on a default-variant product drops Default Title and adds options."""
    data = sandbox.run('mutation { productCreate(product: {title: "Cap"}) { product { id } } }')
    pid = data["productCreate"]["product"]["id"]
    created = sandbox.run(
        """
      mutation($pid: ID!, $v: [ProductVariantsBulkCreateInput!]!) { x: productVariantsBulkCreate(
        productId: $pid, variants: $v) { product { options { name values } variants(first: 5) {
        nodes { title price } } } userErrors { message } } }""".replace(
            "ProductVariantsBulkCreateInput", "ProductVariantsBulkInput"
        ),
        {
            "pid": pid,
            "v": [
                {"optionValues": [{"optionName": "Color", "name": "Black"}], "price": "12"},
                {"optionValues": [{"optionName": "Color", "name": "Sand"}], "price": "13"},
            ],
        },
    )["x"]
    assert created["userErrors"] == []
    assert created["product"]["options"] == [{"name": "Color", "values": ["Black", "Sand"]}]
    assert created["product"]["variants"]["nodes"] == [
        {"title": "Black", "price": "12.00"},
        {"title": "Sand", "price": "13.00"},
    ]


def test_mutations_are_isolated_per_shop(sandbox: Sandbox) -> None:
    """One shop cannot update another shop's product: it does not exist there."""
    product = create_shirt(sandbox)
    from syncapp.sandbox.shopify import graphql_api
    from tests.unit.sandbox.conftest import OTHER_SHOP

    result = graphql_api.execute_internal(
        sandbox.state,
        OTHER_SHOP,
        'mutation($id: ID!) { productUpdate(product: {id: $id, title: "stolen"}) {'
        " userErrors { message } } }",
        {"id": product["id"]},
    )
    assert result["data"]["productUpdate"]["userErrors"] == [{"message": "Product does not exist"}]
