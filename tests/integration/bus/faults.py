"""Faults for the RabbitMQ back-end's tests: a virtual host of the test's own (so that closing
its connections touches no one else's on the shared broker), a TCP proxy between the app and
the broker that can cut and refuse connections, and a bounded asynchronous wait."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import uuid
from collections.abc import Callable, Iterator

BROKER = ("127.0.0.1", 5672)


def rabbitmqctl(*args: str) -> str:
    done = subprocess.run(
        ["rabbitmqctl", *args], capture_output=True, text=True, timeout=60, check=False
    )
    if done.returncode != 0:
        raise AssertionError(f"rabbitmqctl {' '.join(args)} failed: {done.stderr or done.stdout}")
    return done.stdout


@contextlib.contextmanager
def private_vhost() -> Iterator[str]:
    """A fresh virtual host guest may use; deleted (with its queues) afterwards."""
    name = f"syncapp-test-{uuid.uuid4().hex[:10]}"
    rabbitmqctl("add_vhost", name)
    try:
        rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        yield name
    finally:
        rabbitmqctl("delete_vhost", name)


async def close_all_connections(vhost: str, explanation: str = "test") -> None:
    """``rabbitmqctl close_all_connections`` for ``vhost``: the broker closes them."""
    await asyncio.to_thread(
        rabbitmqctl, "close_all_connections", "--vhost", vhost, "--limit", "1000", explanation
    )


async def wait_for(condition: Callable[[], object], *, within: float, what: str) -> None:
    """Return as soon as ``condition()`` is true (checked while the loop runs); fail after
    ``within`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"not within {within:g} s: {what}")
        await asyncio.sleep(0.05)


class TcpProxy:
    """Forwards connections from a free local port to the broker; ``cut()`` closes every open
    connection and refuses new ones (accepted and closed at once) until ``restore()``."""

    def __init__(self, target: tuple[str, int] = BROKER) -> None:
        self.target = target
        self.port = 0
        self.refused = 0
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()
        self._cut = False

    async def __aenter__(self) -> TcpProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.cut()
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    def cut(self) -> None:
        self._cut = True
        for writer in list(self._open):
            writer.transport.abort()
        self._open.clear()

    def restore(self) -> None:
        self._cut = False

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        if self._cut:
            self.refused += 1
            client_w.transport.abort()
            return
        try:
            broker_r, broker_w = await asyncio.open_connection(*self.target)
        except OSError:
            client_w.transport.abort()
            return
        self._open |= {client_w, broker_w}
        try:
            await asyncio.gather(_pipe(client_r, broker_w), _pipe(broker_r, client_w))
        finally:
            for writer in (client_w, broker_w):
                self._open.discard(writer)
                writer.transport.abort()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.transport.abort()  # one side gone: the other goes too
