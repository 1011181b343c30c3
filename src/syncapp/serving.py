"""How every HTTP server of the project is run: uvicorn with bounded request headers.

uvicorn's httptools protocol reads request headers without any limit: a single 64 MiB header
line is buffered whole before the application sees the request (and refuses it). Every server
the project runs — the app (``syncapp serve``) and the Shopify, eManageCRM and CTRwow
sandboxes — therefore uses :class:`BoundedHttpToolsProtocol`, which answers
``431 Request Header Fields Too Large`` and closes the connection as soon as the request line
and headers of one request pass :data:`HEADER_LIMITS`: per header line, in total, or in number.
The body is the application's business (the webhook endpoint has its own limit).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol


@dataclass(frozen=True, slots=True)
class HeaderLimits:
    """Bounds on one request's head (request line plus headers), in bytes and lines."""

    max_line_bytes: int = 16 * 1024
    max_total_bytes: int = 64 * 1024
    max_headers: int = 100


HEADER_LIMITS = HeaderLimits()


class _HeadersTooLarge(Exception):
    """Raised from a parser callback; the parser stops and the request is answered 431."""


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with :data:`HEADER_LIMITS` enforced while reading.

    Line length, count and total are checked per parsed header; in addition the bytes received
    while a request's head is incomplete are counted, so a client sending an endless header
    line is cut off after ``max_total_bytes`` plus one read, before httptools buffers more.
    """

    limits = HEADER_LIMITS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True
        self._head_bytes = 0
        self._head_count = 0
        self._head_size = 0
        self._too_large: str | None = None

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_count = 0
        self._head_size = 0

    def on_url(self, url: bytes) -> None:
        self._head_size += len(url)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_count += 1
        line = len(name) + len(value) + 4  # ": " and CRLF
        self._head_size += line
        if line > self.limits.max_line_bytes:
            self._too_large = f"a request header line is over {self.limits.max_line_bytes} bytes"
        elif self._head_count > self.limits.max_headers:
            self._too_large = f"more than {self.limits.max_headers} request headers"
        elif self._head_size > self.limits.max_total_bytes:
            self._too_large = f"request headers are over {self.limits.max_total_bytes} bytes"
        if self._too_large is not None:
            raise _HeadersTooLarge(self._too_large)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        if (
            self._in_head
            and self._head_bytes > self.limits.max_total_bytes
            and not self.transport.is_closing()
        ):
            self._too_large = f"request headers are over {self.limits.max_total_bytes} bytes"
            self.send_400_response(self._too_large)

    def send_400_response(self, msg: str) -> None:
        if self._too_large is None:
            super().send_400_response(msg)
            return
        text = self._too_large.encode("ascii")
        self.transport.write(
            b"".join(
                [
                    STATUS_LINE[431],
                    b"content-type: text/plain; charset=utf-8\r\n",
                    b"content-length: " + str(len(text)).encode("ascii") + b"\r\n",
                    b"connection: close\r\n\r\n",
                    text,
                ]
            )
        )
        self.transport.close()


def uvicorn_options() -> dict[str, Any]:
    """Options every ``uvicorn.run``/``uvicorn.Config`` of the project passes."""
    return {"http": BoundedHttpToolsProtocol, "access_log": False, "log_config": None}


def serve(app: Any, *, host: str, port: int) -> None:
    """Serve ``app`` until interrupted (the sandboxes)."""
    import uvicorn

    uvicorn.run(app, host=host, port=port, **uvicorn_options())
