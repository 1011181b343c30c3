"""The sandbox's product admin page, used as a person would over HTTP: listing, adding and
editing products fires the same webhooks as the Admin API, userErrors are shown, and forms
without the page's CSRF token are refused."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx

from syncapp.sandbox.shopify import graphql_api

from .conftest import SHOP, RunningSandbox, WebhookReceiver

Receiver = tuple[WebhookReceiver, str]

CREATE = """
mutation($product: ProductCreateInput!) {
  productCreate(product: $product) {
    product { id legacyResourceId variants(first: 1) { nodes { id legacyResourceId } } }
    userErrors { message }
  }
}
"""
SET_PRICE = """
mutation($productId: ID!, $variants: [ProductVariantsBulkInput!]!) {
  productVariantsBulkUpdate(productId: $productId, variants: $variants) { userErrors { message } }
}
"""
READ = """
query($id: ID!) {
  product(id: $id) { title status variants(first: 5) { nodes { price compareAtPrice } } }
}
"""


def make_product(
    sandbox: RunningSandbox, title: str, price: str = "10.00", compare_at: str | None = None
) -> dict[str, str]:
    """A product with one variant, made through the Admin API; its ids."""
    created = graphql_api.execute_internal(
        sandbox.state, SHOP, CREATE, {"product": {"title": title, "status": "ACTIVE"}}
    )
    product = created["data"]["productCreate"]["product"]
    variant = product["variants"]["nodes"][0]
    priced = graphql_api.execute_internal(
        sandbox.state,
        SHOP,
        SET_PRICE,
        {
            "productId": product["id"],
            "variants": [{"id": variant["id"], "price": price, "compareAtPrice": compare_at}],
        },
    )
    assert priced["data"]["productVariantsBulkUpdate"]["userErrors"] == []
    return {
        "id": product["legacyResourceId"],
        "gid": product["id"],
        "variant": variant["legacyResourceId"],
    }


def read_product(sandbox: RunningSandbox, gid: str) -> dict[str, Any]:
    result = graphql_api.execute_internal(sandbox.state, SHOP, READ, {"id": gid})
    product: dict[str, Any] = result["data"]["product"]
    return product


def csrf_token(page: httpx.Response) -> str:
    match = re.search(r'name="csrf_token" value="([0-9a-f]+)"', page.text)
    assert match, "the page has no CSRF token field"
    return match.group(1)


def edit_form(sandbox: RunningSandbox, ids: dict[str, str], **changes: str) -> dict[str, str]:
    """The edit form as the page renders it, with ``changes`` typed in."""
    page = sandbox.control.get(f"/store/{SHOP}/products/{ids['id']}")
    assert page.status_code == 200, page.text
    product = read_product(sandbox, ids["gid"])
    variant = product["variants"]["nodes"][0]
    form = {
        "csrf_token": csrf_token(page),
        "title": product["title"],
        "status": product["status"],
        f"price-{ids['variant']}": variant["price"],
        f"compare_at-{ids['variant']}": variant["compareAtPrice"] or "",
    }
    for name, value in changes.items():
        key = f"{name}-{ids['variant']}" if name in ("price", "compare_at") else name
        form[key] = value
    return form


def test_the_product_list_shows_titles_statuses_and_prices(sandbox: RunningSandbox) -> None:
    """The list names each product, its status and each variant's price and compare-at price."""
    make_product(sandbox, "Straw hat", price="19.90", compare_at="25.00")

    page = sandbox.control.get(f"/store/{SHOP}/products")

    assert page.status_code == 200
    assert "Straw hat" in page.text
    assert "Active" in page.text
    assert "19.90" in page.text
    assert "25.00" in page.text


def test_product_pages_use_the_admin_chrome_and_urls_of_the_app_frame(
    sandbox: RunningSandbox,
) -> None:
    """The product list and a product page have the same top bar and side navigation as the
    page that frames the app, and link with the shop's handle (``/store/<handle>/...``)."""
    ids = make_product(sandbox, "Chrome hat", price="10.00")
    handle = SHOP.removesuffix(".myshopify.com")
    for path in (f"/store/{handle}/products", f"/store/{handle}/products/{ids['id']}"):
        page = sandbox.control.get(path)
        assert page.status_code == 200, page.text
        assert 'class="topbar"' in page.text
        assert '<nav class="side" aria-label="Admin">' in page.text
        assert f'href="/store/{handle}/apps/' in page.text
        assert f'aria-current="page" href="/store/{handle}/products"' in page.text
        assert f"/store/{SHOP}/" not in page.text
    listing = sandbox.control.get(f"/store/{handle}/products")
    product = ids["id"]
    assert f'href="/store/{handle}/products/{product}"' in listing.text


def test_product_titles_are_escaped(sandbox: RunningSandbox) -> None:
    """A title with markup is shown as text, never run as HTML."""
    make_product(sandbox, "<script>alert(1)</script>")

    page = sandbox.control.get(f"/store/{SHOP}/products")

    assert "<script>alert(1)</script>" not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text


def test_changing_a_price_fires_products_update_with_the_new_price(
    sandbox: RunningSandbox, receiver: Receiver
) -> None:
    """Saving a new price goes through the Admin API and the app hears products/update."""
    recv, _ = receiver
    ids = make_product(sandbox, "Cap", price="10.00")
    recv.wait_for(3)  # products/create, the products/update that follows it, the price's
    recv.requests.clear()

    saved = sandbox.control.post(
        f"/store/{SHOP}/products/{ids['id']}",
        data=edit_form(sandbox, ids, price="12.50", compare_at="15.00"),
    )
    [webhook] = recv.wait_for(1)

    assert saved.status_code == 303
    assert webhook.headers["x-shopify-topic"] == "products/update"
    assert json.loads(webhook.body)["variants"][0]["price"] == "12.50"
    assert read_product(sandbox, ids["gid"])["variants"]["nodes"][0] == {
        "price": "12.50",
        "compareAtPrice": "15.00",
    }


def test_changing_title_and_status_saves_them(sandbox: RunningSandbox) -> None:
    """Title and status edits are saved with productUpdate and the page says so."""
    ids = make_product(sandbox, "Scarf")

    saved = sandbox.control.post(
        f"/store/{SHOP}/products/{ids['id']}",
        data=edit_form(sandbox, ids, title="Wool scarf", status="DRAFT"),
        follow_redirects=True,
    )

    assert saved.status_code == 200
    assert "Saved." in saved.text
    product = read_product(sandbox, ids["gid"])
    assert (product["title"], product["status"]) == ("Wool scarf", "DRAFT")


def test_clearing_the_compare_at_price_removes_it(sandbox: RunningSandbox) -> None:
    """An emptied compare-at field ends the sale: compareAtPrice becomes null."""
    ids = make_product(sandbox, "Belt", price="20.00", compare_at="30.00")

    sandbox.control.post(
        f"/store/{SHOP}/products/{ids['id']}", data=edit_form(sandbox, ids, compare_at="")
    )

    assert read_product(sandbox, ids["gid"])["variants"]["nodes"][0]["compareAtPrice"] is None


def test_a_rejected_price_shows_the_apis_user_error(sandbox: RunningSandbox) -> None:
    """A negative price is refused by the API and its message is shown on the form."""
    ids = make_product(sandbox, "Gloves", price="8.00")

    page = sandbox.control.post(
        f"/store/{SHOP}/products/{ids['id']}", data=edit_form(sandbox, ids, price="-1")
    )

    assert page.status_code == 422
    assert "Price must be greater than or equal to 0" in page.text
    assert 'value="-1"' in page.text
    assert read_product(sandbox, ids["gid"])["variants"]["nodes"][0]["price"] == "8.00"


def test_adding_a_product_creates_it_and_fires_products_create(
    sandbox: RunningSandbox, receiver: Receiver
) -> None:
    """The add form creates the product with its price; the app hears products/create."""
    recv, _ = receiver
    listing = sandbox.control.get(f"/store/{SHOP}/products")

    added = sandbox.control.post(
        f"/store/{SHOP}/products",
        data={
            "csrf_token": csrf_token(listing),
            "title": "Sun hat",
            "status": "ACTIVE",
            "price": "29.00",
            "compare_at": "",
        },
    )
    # Deliveries run concurrently (as Shopify's may), so a following products/update for
    # the price can arrive first: wait for the create itself, not for the first arrival.
    sandbox.wait_for_deliveries(1, topic="products/create", status="delivered")

    assert added.status_code == 303
    handle = SHOP.removesuffix(".myshopify.com")
    assert re.fullmatch(rf"/store/{handle}/products/\d+\?saved=1", added.headers["location"])
    assert "products/create" in recv.topics()
    page = sandbox.control.get(added.headers["location"])
    assert "Sun hat" in page.text
    assert 'value="29.00"' in page.text


def test_adding_a_product_without_a_title_shows_the_error(sandbox: RunningSandbox) -> None:
    """productCreate's userError for a blank title is shown on the list page."""
    listing = sandbox.control.get(f"/store/{SHOP}/products")

    page = sandbox.control.post(
        f"/store/{SHOP}/products",
        data={"csrf_token": csrf_token(listing), "title": "", "status": "DRAFT", "price": ""},
    )

    assert page.status_code == 422
    assert "Title" in page.text
    assert "Not saved" in page.text


def test_a_form_without_the_csrf_token_is_refused(sandbox: RunningSandbox) -> None:
    """A post lacking the page's token changes nothing."""
    ids = make_product(sandbox, "Boots", price="50.00")
    form = edit_form(sandbox, ids, price="1.00")
    form["csrf_token"] = "0" * 64

    refused = sandbox.control.post(f"/store/{SHOP}/products/{ids['id']}", data=form)

    assert refused.status_code == 403
    assert read_product(sandbox, ids["gid"])["variants"]["nodes"][0]["price"] == "50.00"


def test_a_cross_site_post_is_refused(sandbox: RunningSandbox) -> None:
    """A post whose Origin is another site is refused even with a token."""
    ids = make_product(sandbox, "Socks", price="5.00")

    refused = sandbox.control.post(
        f"/store/{SHOP}/products/{ids['id']}",
        data=edit_form(sandbox, ids, price="1.00"),
        headers={"Origin": "https://evil.example"},
    )

    assert refused.status_code == 403


def test_an_unknown_product_is_a_404_page(sandbox: RunningSandbox) -> None:
    """A product id the shop does not have gets a 404 page."""
    page = sandbox.control.get(f"/store/{SHOP}/products/999")

    assert page.status_code == 404
    assert "no product 999" in page.text


def test_an_unknown_shop_is_a_404_page(sandbox: RunningSandbox) -> None:
    """A shop the sandbox does not have gets a 404 page."""
    page = sandbox.control.get("/store/nowhere/products")

    assert page.status_code == 404


def test_the_admin_is_not_served_on_a_shops_host(sandbox: RunningSandbox) -> None:
    """The admin pages live on the sandbox's own address, not on a shop's API host."""
    with sandbox.shop_client() as http:
        page = http.get(f"https://{SHOP}/store/{SHOP}/products")

    assert page.status_code == 404


def test_the_admin_root_lets_the_merchant_choose_a_store(sandbox: RunningSandbox) -> None:
    """``/`` (where "Go to your Shopify admin" leads) lists the stores, each linking to its
    admin; the favicon is served, not a 404."""
    page = sandbox.control.get("/")
    assert page.status_code == 200
    assert "Choose a store" in page.text
    assert f'href="/store/{SHOP.removesuffix(".myshopify.com")}/products"' in page.text
    icon = sandbox.control.get("/favicon.ico")
    assert icon.status_code == 200
    assert icon.headers["content-type"] == "image/svg+xml"
