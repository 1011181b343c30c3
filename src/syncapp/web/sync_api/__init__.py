"""The Sync API: sync state, conflicts, settings and dead letters of a shop over HTTP, for
eManageCRM's services and operators. FastAPI, mounted at ``/api`` (OpenAPI at
``/api/openapi.json``); every route takes ``Authorization: Bearer`` with an operator API key
(:mod:`.keys`) or an eManageCRM IAM access token for one account (:mod:`.iam`), and needs a
scope; a key or token of one shop can do nothing to another.

    status  when
    ------  -----------------------------------------------------------------------
    400     the body is not JSON
    401     no bearer credential, or not a live key / valid token (``WWW-Authenticate: Bearer``)
    403     the key lacks the route's scope, or is bound to another shop
    404     no shop of that domain has installed the app
    422     the body or a parameter is not what the route takes (a resync's object that
            is no product id)

The routes read and write in short transactions off the event loop (FastAPI runs plain
``def`` routes in its thread pool); none calls another system.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session, sessionmaker

from syncapp.bus import operators
from syncapp.sync import state
from syncapp.sync.resync import OBJECT_PATTERN, InvalidObject, request_resync
from syncapp.web.sync_api.iam import IamVerifier
from syncapp.web.sync_api.keys import PREFIX, Principal, authenticate

SHOP_PATTERN = r"^[a-z0-9][a-z0-9\-]*\.myshopify\.com$"
ShopPath = Annotated[str, Path(pattern=SHOP_PATTERN, max_length=255)]


class SyncStatusOut(BaseModel):
    shop: str
    keep_products_synchronized: bool
    linked_products: int
    linked_variants: int
    open_conflicts: int
    last_change_applied_at: datetime | None
    pending_events: int
    in_flight_events: int
    dead_letters: int
    oldest_pending_at: datetime | None


class ConflictOut(BaseModel):
    id: int
    kind: str
    field: str | None
    shopify_value: Any
    emanage_value: Any
    winner: str | None
    reason: str
    created_at: datetime
    resolved_at: datetime | None
    shopify_gid: str | None
    emanage_id: str | None


class SettingsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    keep_products_synchronized: bool


class SettingsOut(BaseModel):
    keep_products_synchronized: bool
    changed: bool


class DeadLetterOut(BaseModel):
    id: int
    source: str
    topic: str
    attempts: int
    last_error: str | None
    received_at: datetime
    dead_at: datetime | None


class ReplayIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    ids: list[int] = Field(default_factory=list, max_length=10_000)
    topic: str | None = Field(default=None, max_length=128)


class ReplayOut(BaseModel):
    replayed: int


class ResyncIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    object: str | None = Field(
        default=None,
        max_length=128,
        pattern=OBJECT_PATTERN,
        description="A Shopify product gid or numeric id, or an eManageCRM product id; "
        "absent: the whole shop (a new backfill).",
    )


class ResyncOut(BaseModel):
    scope: str = Field(description="shop, shopify or emanage")
    shopify_gid: str | None
    emanage_id: str | None
    event_id: str | None = Field(description="the product.resync-requested event published")
    run: str | None = Field(description="the backfill run started for a whole-shop resync")


class Problem(BaseModel):
    detail: str


_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem, "description": "The body is not JSON"},
    401: {"model": Problem, "description": "No live API key"},
    403: {"model": Problem, "description": "Missing scope, or the key is for another shop"},
    404: {"model": Problem, "description": "No such shop"},
}


def principal(request: Request) -> Principal:
    """The caller, from ``Authorization: Bearer <operator key | eManageCRM IAM JWT>``; 401
    otherwise."""
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    presented = presented.strip()
    sessions: sessionmaker[Session] = request.app.state.sessions
    iam: IamVerifier | None = request.app.state.iam
    found = None
    if scheme.lower() == "bearer" and presented.startswith(PREFIX):
        found = authenticate(sessions, presented)
    elif scheme.lower() == "bearer" and iam is not None and presented.count(".") == 2:
        found = iam.principal(sessions, presented)
    if found is None:
        raise HTTPException(
            401, "send Authorization: Bearer <API key>", {"WWW-Authenticate": "Bearer"}
        )
    return found


def allowed(scope: str) -> Callable[[str, Principal], str]:
    """A dependency giving the path's shop when the caller may act on it with ``scope``."""

    def check(shop: ShopPath, who: Annotated[Principal, Depends(principal)]) -> str:
        if scope not in who.scopes:
            raise HTTPException(403, f"this key lacks the scope {scope}")
        if not who.may_touch(shop):
            raise HTTPException(403, "this key is for another shop")
        return shop

    return check


Read = Annotated[str, Depends(allowed("sync:read"))]
Write = Annotated[str, Depends(allowed("sync:write"))]
Replay = Annotated[str, Depends(allowed("dlq:replay"))]


def sync_api(sessions: sessionmaker[Session], iam: IamVerifier | None = None) -> FastAPI:
    """The API on ``sessions``; with ``iam``, eManageCRM IAM tokens are taken besides keys."""
    api = FastAPI(
        title="Sync App — Sync API",
        version="1.0.0",
        openapi_url="/openapi.json",
        docs_url=None,
        redoc_url=None,
        description=__doc__,
    )
    api.state.sessions = sessions
    api.state.iam = iam

    @api.exception_handler(state.UnknownShop)
    async def unknown_shop(request: Request, exc: state.UnknownShop) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @api.get("/v1/shops/{shop}/sync", responses=_ERRORS)
    def get_status(shop: Read) -> SyncStatusOut:
        """Links, open conflicts, the last applied change, and the shop's events on the bus."""
        s = state.sync_status(sessions, shop)
        return SyncStatusOut.model_validate(s, from_attributes=True)

    @api.get("/v1/shops/{shop}/conflicts", responses=_ERRORS)
    def get_conflicts(
        shop: Read,
        open_only: Annotated[bool, Query(alias="open")] = True,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> list[ConflictOut]:
        """Recorded conflicts, newest first: the field, both values, the winner and why."""
        found = state.conflicts(sessions, shop, open_only=open_only, limit=limit)
        return [ConflictOut.model_validate(c, from_attributes=True) for c in found]

    @api.put("/v1/shops/{shop}/settings", responses=_ERRORS)
    def put_settings(shop: Write, body: SettingsIn) -> SettingsOut:
        """Keep Products Synchronized for the whole shop."""
        changed = state.set_keep_products_synchronized(
            sessions, shop, body.keep_products_synchronized
        )
        return SettingsOut(
            keep_products_synchronized=body.keep_products_synchronized, changed=changed
        )

    @api.post("/v1/shops/{shop}/resync", status_code=202, responses=_ERRORS)
    def post_resync(shop: Write, body: ResyncIn | None = None) -> ResyncOut:
        """Bring one product (``object``) or the whole shop to agreement again: publishes a
        ``product.resync-requested`` event, or starts a backfill; the worker does the rest."""
        try:
            done = request_resync(sessions, shop, body.object if body else None)
        except InvalidObject as exc:
            # The shape of FastAPI's own validation errors, so 422 has one schema.
            detail = [{"loc": ["body", "object"], "msg": str(exc), "type": "value_error"}]
            raise HTTPException(422, detail) from None
        return ResyncOut(
            scope=done.scope,
            shopify_gid=done.shopify_gid,
            emanage_id=done.emanage_id,
            event_id=done.event_id,
            run=done.run,
        )

    @api.get("/v1/shops/{shop}/dead-letters", responses=_ERRORS)
    def get_dead_letters(
        shop: Read,
        topic: Annotated[str | None, Query(max_length=128)] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> list[DeadLetterOut]:
        """The shop's dead letters (payloads stay out: they may carry customer data)."""
        state.require_shop(sessions, shop)
        rows = operators.dead_letters(
            sessions, operators.Selection(shop=shop, topic=topic), limit=limit
        )
        return [
            DeadLetterOut(
                id=r.id,
                source=r.source,
                topic=r.topic,
                attempts=r.attempts,
                last_error=r.last_error,
                received_at=r.received_at,
                dead_at=r.processed_at,
            )
            for r in rows
        ]

    @api.post("/v1/shops/{shop}/dead-letters/replay", responses=_ERRORS)
    def replay(shop: Replay, body: ReplayIn) -> ReplayOut:
        """Put the shop's dead letters (all, or those of ``ids`` / ``topic``) back on the bus.
        Idempotent: what is not a dead letter any more is left alone."""
        state.require_shop(sessions, shop)
        selection = operators.Selection(ids=body.ids, topic=body.topic, shop=shop)
        return ReplayOut(replayed=operators.replay(sessions, selection))

    return api
