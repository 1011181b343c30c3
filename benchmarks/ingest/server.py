"""The app as ``make run`` serves it, plus ``POST /noop`` for a same-server baseline.

``/noop`` reads the body and answers 200, dispatched exactly like the webhook endpoint (the
same middleware, then a ``WebhookRoute`` in front of the router), so the difference between the
two endpoints is exactly verification + durable recording.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.types import Receive, Scope, Send

from syncapp.web.app import app_from_env
from syncapp.web.webhooks import WebhookRoute


async def noop(scope: Scope, receive: Receive, send: Send) -> None:
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"0")]}
    )
    await send({"type": "http.response.body", "body": b""})


def app() -> Starlette:
    application = app_from_env()
    # Appended after the app's own middleware: the stack is built at the first request.
    application.user_middleware.append(Middleware(WebhookRoute, path="/noop", endpoint=noop))
    return application
