"""The favicon every served page's browser asks for (``/favicon.ico``), so no server answers
it with a 404: a one-letter SVG tile per service, answered with a long cache lifetime."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32">'
    '<rect width="32" height="32" rx="7" fill="{color}"/>'
    '<text x="16" y="22.5" font-family="Arial,sans-serif" font-size="18" font-weight="700"'
    ' text-anchor="middle" fill="#fff">{letter}</text></svg>'
)


def favicon_routes(letter: str, color: str) -> list[BaseRoute]:
    """``/favicon.ico`` and ``/favicon.svg``: an SVG tile with ``letter`` on ``color``."""
    body = _SVG.format(letter=letter[:1], color=color).encode()

    async def favicon(request: Request) -> Response:
        return Response(
            body,
            media_type="image/svg+xml",
            headers={"Cache-Control": "public, max-age=86400"},
        )

    return [
        Route("/favicon.ico", favicon, methods=["GET", "HEAD"]),
        Route("/favicon.svg", favicon, methods=["GET", "HEAD"]),
    ]
