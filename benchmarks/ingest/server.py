"""The app as ``make run`` serves it, plus ``POST /noop`` for a same-server baseline.

``/noop`` reads the body and answers 200 through the same middleware, so the difference between
the two endpoints is exactly verification + durable recording.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from syncapp.web.app import app_from_env


async def noop(request: Request) -> Response:
    await request.body()
    return Response(status_code=200)


def app() -> Starlette:
    application = app_from_env()
    application.router.routes.append(Route("/noop", noop, methods=["POST"]))
    return application
