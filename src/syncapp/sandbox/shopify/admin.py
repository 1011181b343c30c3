"""A small product admin for demos, at ``/store/<shop>/products`` on the sandbox's own address
(like ``admin.shopify.com/store/<shop>/products``).

It lists a shop's products and edits title, status and each variant's price and compare-at
price, and adds products. Every read and write goes through the Admin GraphQL API
(:func:`graphql_api.execute_internal`) with the mutations a merchant's admin uses —
``productCreate``, ``productUpdate``, ``productVariantsBulkUpdate`` — so an edit here fires the
same webhooks as one made over the API, and the API's ``userErrors`` are shown on the form.

Forms carry a CSRF token: an HMAC of the shop with a secret made when the routes are built, so
a page from elsewhere cannot post edits (and a cross-site ``Origin`` is refused as well).
"""

from __future__ import annotations

import hashlib
import hmac
import html
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.templating import Jinja2Templates

from syncapp.sandbox.shopify import documents, graphql_api
from syncapp.sandbox.shopify.app_identity import app_identity
from syncapp.sandbox.shopify.oauth import not_on_shop_host
from syncapp.sandbox.shopify.shops import normalize_domain
from syncapp.sandbox.shopify.state import SandboxState

STATUSES = ("ACTIVE", "DRAFT", "ARCHIVED")
PAGE_SIZE = 50

# The documents live in .graphql files so a test validates each against the real schema.
LIST_QUERY = documents.load("admin_products")
PRODUCT_QUERY = documents.load("admin_product")
PRODUCT_UPDATE = documents.load("admin_product_update")
PRODUCT_CREATE = documents.load("admin_product_create")
VARIANTS_UPDATE = documents.load("admin_variants_update")

_templates = Jinja2Templates(
    env=Environment(
        loader=FileSystemLoader(Path(__file__).parent / "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
    )
)


class AdminApiError(Exception):
    """The Admin API answered with top-level errors (a bug or an unimplemented field)."""


@dataclass
class SaveResult:
    """What a form submission led to: error messages to show, or nothing (saved)."""

    errors: list[str] = field(default_factory=list)
    status_code: int = 422


def _csrf_token(secret: bytes, shop: str) -> str:
    return hmac.new(secret, shop.encode(), hashlib.sha256).hexdigest()


def shop_handle(shop: str) -> str:
    """The shop's handle, as the admin's URLs name it (``/store/demo/...``)."""
    return shop.removesuffix(".myshopify.com")


def _product_gid(number: str) -> str:
    return f"gid://shopify/Product/{number}"


def _messages(user_errors: list[dict[str, Any]], labels: dict[str, str]) -> list[str]:
    """``userErrors`` as sentences, prefixed with the form field they are about."""
    out = []
    for error in user_errors:
        path = [str(p) for p in (error.get("field") or [])]
        label = next((labels[p] for p in reversed(path) if p in labels), None)
        out.append(f"{label}: {error['message']}" if label else str(error["message"]))
    return out


def routes(state: SandboxState) -> list[BaseRoute]:
    """``/store/{shop}/products`` (list, add) and ``/store/{shop}/products/{id}`` (edit)."""
    csrf_secret = secrets.token_bytes(32)

    async def run(shop: str, document: str, variables: dict[str, Any]) -> dict[str, Any]:
        result = await run_in_threadpool(
            graphql_api.execute_internal, state, shop, document, variables
        )
        if result.get("errors"):
            messages = "; ".join(str(e.get("message")) for e in result["errors"])
            raise AdminApiError(f"The Admin API refused the request: {messages}")
        data: dict[str, Any] = result["data"]
        return data

    def render(
        request: Request, name: str, context: dict[str, Any], status_code: int = 200
    ) -> HTMLResponse:
        shop = context["shop_domain"]
        identity = app_identity(state.config)
        found = context.get("shop")
        context = {
            **context,
            "csrf_token": _csrf_token(csrf_secret, shop),
            "statuses": STATUSES,
            # The chrome of the admin around the app (embedded/base.html), same URLs.
            "shop_handle": shop_handle(shop),
            "shop_name": found["name"] if isinstance(found, dict) and found.get("name") else shop,
            "app_name": identity.name,
            "app_handle": identity.handle,
            "nav_current": "products",
        }
        response = _templates.TemplateResponse(request, name, context, status_code=status_code)
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; style-src 'unsafe-inline'"
        )
        return response

    def error_page(request: Request, shop: str, status_code: int, message: str) -> HTMLResponse:
        return render(
            request,
            "admin/error.html",
            {"shop_domain": shop, "message": message},
            status_code=status_code,
        )

    async def guard(request: Request) -> str | Response:
        """The shop this request is for, or the response refusing it."""
        if (refused := not_on_shop_host(request)) is not None:
            return refused
        try:
            shop = normalize_domain(str(request.path_params["shop"]))
        except ValueError as exc:
            return HTMLResponse(f"Not a shop: {html.escape(str(exc))}", status_code=404)
        if request.method == "POST":
            origin = request.headers.get("origin")
            if origin and urlparse(origin).netloc != request.headers.get("host"):
                return HTMLResponse("Cross-site form posts are refused.", status_code=403)
            form = await request.form()
            sent = str(form.get("csrf_token", ""))
            if not hmac.compare_digest(sent, _csrf_token(csrf_secret, shop)):
                return HTMLResponse(
                    "The form's security token is missing or stale; reload the page and retry.",
                    status_code=403,
                )
        return shop

    async def list_products(request: Request) -> Response:
        shop = await guard(request)
        if isinstance(shop, Response):
            return shop
        return await _list_page(request, shop)

    async def _list_page(
        request: Request,
        shop: str,
        *,
        errors: list[str] | None = None,
        submitted: dict[str, str] | None = None,
        status_code: int = 200,
    ) -> Response:
        variables: dict[str, Any] = {"first": PAGE_SIZE, "after": request.query_params.get("after")}
        try:
            data = await run(shop, LIST_QUERY, variables)
        except LookupError:
            return error_page(request, shop, 404, f"There is no shop {shop} in this sandbox.")
        except AdminApiError as exc:
            return error_page(request, shop, 500, str(exc))
        return render(
            request,
            "admin/products.html",
            {
                "shop_domain": shop,
                "shop": data["shop"],
                "products": data["products"]["nodes"],
                "page_info": data["products"]["pageInfo"],
                "errors": errors or [],
                "new": submitted or {"title": "", "status": "DRAFT", "price": "", "compare_at": ""},
            },
            status_code=status_code,
        )

    async def add_product(request: Request) -> Response:
        shop = await guard(request)
        if isinstance(shop, Response):
            return shop
        form = await request.form()
        submitted = {k: str(form.get(k, "")).strip() for k in ("title", "status", "price")}
        submitted["compare_at"] = str(form.get("compare_at", "")).strip()
        try:
            created = await _create(shop, submitted)
        except LookupError:
            return error_page(request, shop, 404, f"There is no shop {shop} in this sandbox.")
        except AdminApiError as exc:
            return error_page(request, shop, 500, str(exc))
        if isinstance(created, SaveResult):
            return await _list_page(
                request, shop, errors=created.errors, submitted=submitted, status_code=422
            )
        return RedirectResponse(
            f"/store/{shop_handle(shop)}/products/{created}?saved=1", status_code=303
        )

    async def _create(shop: str, submitted: dict[str, str]) -> str | SaveResult:
        """Create the product; its legacy id, or the errors to show."""
        status = submitted["status"] if submitted["status"] in STATUSES else "DRAFT"
        data = await run(
            shop, PRODUCT_CREATE, {"product": {"title": submitted["title"], "status": status}}
        )
        payload = data["productCreate"]
        if payload["userErrors"]:
            return SaveResult(_messages(payload["userErrors"], {"title": "Title"}))
        product = payload["product"]
        if submitted["price"] or submitted["compare_at"]:
            variant: dict[str, Any] = {"id": product["variants"]["nodes"][0]["id"]}
            if submitted["price"]:
                variant["price"] = submitted["price"]
            if submitted["compare_at"]:
                variant["compareAtPrice"] = submitted["compare_at"]
            data = await run(
                shop, VARIANTS_UPDATE, {"productId": product["id"], "variants": [variant]}
            )
            errors = data["productVariantsBulkUpdate"]["userErrors"]
            if errors:
                # The product exists now; its page shows the price problem to fix there.
                labels = {"price": "Price", "compareAtPrice": "Compare-at price"}
                return SaveResult([f"Product created, but {m}" for m in _messages(errors, labels)])
        return str(product["legacyResourceId"])

    async def _load(shop: str, number: str) -> dict[str, Any] | None:
        data = await run(shop, PRODUCT_QUERY, {"id": _product_gid(number)})
        if data["product"] is None:
            return None
        return {"shop": data["shop"], "product": data["product"]}

    async def edit_product(request: Request) -> Response:
        shop = await guard(request)
        if isinstance(shop, Response):
            return shop
        number = str(request.path_params["product_id"])
        try:
            loaded = await _load(shop, number)
            if loaded is None:
                return error_page(request, shop, 404, f"There is no product {number} in {shop}.")
            errors: list[str] = []
            status_code = 200
            form: FormData | None = None
            if request.method == "POST":
                form = await request.form()
                result = await _save(shop, loaded["product"], form)
                if not result.errors:
                    return RedirectResponse(
                        f"/store/{shop_handle(shop)}/products/{number}?saved=1", status_code=303
                    )
                errors, status_code = result.errors, result.status_code
        except LookupError:
            return error_page(request, shop, 404, f"There is no shop {shop} in this sandbox.")
        except AdminApiError as exc:
            return error_page(request, shop, 500, str(exc))
        return render(
            request,
            "admin/product.html",
            {
                "shop_domain": shop,
                "shop": loaded["shop"],
                "product": loaded["product"],
                "values": _form_values(loaded["product"], form),
                "errors": errors,
                "saved": request.method == "GET" and request.query_params.get("saved") == "1",
            },
            status_code=status_code,
        )

    async def _save(shop: str, product: dict[str, Any], form: FormData) -> SaveResult:
        """Apply the edit form with productUpdate and productVariantsBulkUpdate."""
        values = _form_values(product, form)
        changes: dict[str, Any] = {}
        if values["title"] != product["title"]:
            changes["title"] = values["title"]
        if values["status"] != product["status"]:
            changes["status"] = values["status"]
        if changes:
            data = await run(shop, PRODUCT_UPDATE, {"product": {"id": product["id"], **changes}})
            user_errors = data["productUpdate"]["userErrors"]
            if user_errors:
                return SaveResult(_messages(user_errors, {"title": "Title", "status": "Status"}))
        variants: list[dict[str, Any]] = []
        labels: dict[str, str] = {}
        for variant in product["variants"]["nodes"]:
            wanted = values["variants"][variant["id"]]
            update: dict[str, Any] = {}
            if wanted["price"] != (variant["price"] or ""):
                update["price"] = wanted["price"]
            if wanted["compare_at"] != (variant["compareAtPrice"] or ""):
                # An empty compare-at price removes the sale.
                update["compareAtPrice"] = wanted["compare_at"] or None
            if update:
                labels[str(len(variants))] = f"Variant “{variant['title']}”"
                variants.append({"id": variant["id"], **update})
        if variants:
            data = await run(
                shop, VARIANTS_UPDATE, {"productId": product["id"], "variants": variants}
            )
            user_errors = data["productVariantsBulkUpdate"]["userErrors"]
            if user_errors:
                return SaveResult(_variant_messages(user_errors, labels))
        return SaveResult()

    async def choose_store(request: Request) -> Response:
        """``/``: the stores of this sandbox, as admin.shopify.com asks which store to open."""
        if (refused := not_on_shop_host(request)) is not None:
            return refused
        with state.db.transaction() as conn:
            rows = conn.execute("SELECT domain, name FROM shops ORDER BY name, domain").fetchall()
        stores = [
            {
                "handle": shop_handle(r["domain"]),
                "name": r["name"] or r["domain"],
                "domain": r["domain"],
            }
            for r in rows
        ]
        response = _templates.TemplateResponse(request, "admin/stores.html", {"stores": stores})
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; style-src 'unsafe-inline'"
        )
        return response

    async def store_home(request: Request) -> Response:
        if (refused := not_on_shop_host(request)) is not None:
            return refused
        return RedirectResponse(f"/store/{request.path_params['shop']}/products", status_code=302)

    return [
        Route("/", choose_store, methods=["GET"]),
        Route("/store/{shop}", store_home, methods=["GET"]),
        Route("/store/{shop}/products", list_products, methods=["GET"]),
        Route("/store/{shop}/products", add_product, methods=["POST"]),
        Route("/store/{shop}/products/{product_id:int}", edit_product, methods=["GET", "POST"]),
    ]


def _form_values(product: dict[str, Any], form: FormData | None) -> dict[str, Any]:
    """The edit form's values: what was submitted, else the product as it is."""

    def pick(name: str, current: str | None) -> str:
        if form is None or name not in form:
            return current or ""
        return str(form.get(name, "")).strip()

    status = pick("status", product["status"])
    return {
        "title": pick("title", product["title"]),
        "status": status if status in STATUSES else product["status"],
        "variants": {
            v["id"]: {
                "price": pick(f"price-{v['legacyResourceId']}", v["price"]),
                "compare_at": pick(f"compare_at-{v['legacyResourceId']}", v["compareAtPrice"]),
            }
            for v in product["variants"]["nodes"]
        },
    }


def _variant_messages(user_errors: list[dict[str, Any]], labels: dict[str, str]) -> list[str]:
    """Bulk-update errors name ``["variants", "<index>", "price"]``; say which variant."""
    fields = {"price": "price", "compareAtPrice": "compare-at price"}
    out = []
    for error in user_errors:
        path = [str(p) for p in (error.get("field") or [])]
        who = labels.get(path[1]) if len(path) > 1 and path[0] == "variants" else None
        what = fields.get(path[-1]) if path else None
        prefix = " ".join(p for p in (who, what) if p)
        out.append(f"{prefix}: {error['message']}" if prefix else str(error["message"]))
    return out
