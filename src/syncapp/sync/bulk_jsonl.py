"""Reading a bulk operation's JSONL result back into products (pure: no I/O).

A bulk query's result has one line per object: a product, and each of its variants on a line of
its own with ``__parentId`` naming the product. Shopify gives no order for ungrouped output (the
2026-01+ default, pitfall 23): a product's variants may come before it, after it, or interleaved
with other products' lines. :class:`Assembler` rebuilds each product from lines fed in file
order, holding the incomplete ones in a buffer keyed by product id:

- a product is **complete** when its line and as many variant lines as its
  ``variantsCount.count`` have been seen (the catalog query selects that count for exactly this
  reason), and is emitted at once with its snapshot;
- when the buffer holds more than ``capacity`` lines, the incomplete product seen first is
  **evicted**: emitted without a snapshot (the engine then reads the product itself), so memory
  stays bounded whatever the order;
- at the end of the file, whatever is left is emitted: with its snapshot when its line and all
  its variants are there, else without (a partial file of a failed operation).

:attr:`Assembler.resume` is where reading may restart after a crash: the first line of the
oldest product still buffered (every line before it belongs to a product already emitted). A
restart re-reads from there and may emit a product again; the caller dedupes by event id.

:func:`split_lines` cuts a stream of byte chunks into lines with their byte offsets, so a reader
keeps only one chunk and one partial line in memory.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

__all__ = ["Assembled", "Assembler", "InvalidLine", "Position", "split_lines"]

VARIANT_PREFIX = "gid://shopify/ProductVariant/"


class InvalidLine(ValueError):
    """A JSONL line that is not a JSON object with a string ``id``."""


@dataclass(frozen=True, slots=True)
class Position:
    """A place in the file: the line's number (from 0) and the byte offset where it starts."""

    line: int
    offset: int


@dataclass(frozen=True, slots=True)
class Assembled:
    """One product read from the file. ``snapshot`` is the product node with its variants as
    ``variants.nodes`` (the shape of the ``SyncProduct`` read), or None when the file did not
    give the whole product (evicted, or partial data): the engine reads it itself."""

    gid: str
    snapshot: dict[str, Any] | None
    first: Position

    @property
    def complete(self) -> bool:
        return self.snapshot is not None


@dataclass(slots=True)
class _Group:
    first: Position
    node: dict[str, Any] | None = None
    children: list[dict[str, Any]] = field(default_factory=list)

    @property
    def lines(self) -> int:
        return len(self.children) + (1 if self.node is not None else 0)

    @property
    def expected(self) -> int | None:
        if self.node is None:
            return None
        count = self.node.get("variantsCount")
        if isinstance(count, dict) and isinstance(count.get("count"), int):
            return int(count["count"])
        return None

    def is_complete(self) -> bool:
        expected = self.expected
        return expected is not None and len(self.children) >= expected

    def snapshot(self) -> dict[str, Any]:
        assert self.node is not None
        variants = [c for c in self.children if str(c.get("id", "")).startswith(VARIANT_PREFIX)]
        return {**self.node, "variants": {"nodes": variants}}


class Assembler:
    """Rebuilds products from JSONL lines fed in file order (see the module docstring)."""

    def __init__(self, capacity: int = 10_000) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least one line")
        self.capacity = capacity
        self._groups: OrderedDict[str, _Group] = OrderedDict()
        self._buffered = 0
        self._next = Position(0, 0)
        self.evicted = 0
        self.peak_buffered = 0

    @property
    def buffered_lines(self) -> int:
        return self._buffered

    @property
    def resume(self) -> Position:
        """The earliest line not yet accounted for by an emitted product."""
        for group in self._groups.values():
            return group.first
        return self._next

    def feed(self, position: Position, end: int, record: dict[str, Any]) -> list[Assembled]:
        """Take the line at ``position`` (ending at byte ``end``); return what it completes
        or what the buffer had to evict."""
        self._next = Position(position.line + 1, end)
        ident = record.get("id")
        if not isinstance(ident, str):
            raise InvalidLine(f"line {position.line} has no string id")
        parent = record.get("__parentId")
        key = parent if isinstance(parent, str) else ident
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = _Group(first=position)
        if isinstance(parent, str):
            group.children.append({k: v for k, v in record.items() if k != "__parentId"})
        else:
            group.node = record
        self._buffered += 1
        self.peak_buffered = max(self.peak_buffered, self._buffered)
        out: list[Assembled] = []
        if group.is_complete():
            out.append(self._emit(key, complete=True))
        while self._buffered > self.capacity and self._groups:
            oldest = next(iter(self._groups))
            self.evicted += 1
            out.append(self._emit(oldest, complete=False))
        return out

    def finish(self) -> list[Assembled]:
        """The end of the file: emit every product left (whole ones with their snapshot)."""
        out = []
        while self._groups:
            key, group = next(iter(self._groups.items()))
            whole = group.node is not None and (group.expected is None or group.is_complete())
            out.append(self._emit(key, complete=whole))
        return out

    def _emit(self, key: str, *, complete: bool) -> Assembled:
        group = self._groups.pop(key)
        self._buffered -= group.lines
        return Assembled(
            gid=key, snapshot=group.snapshot() if complete else None, first=group.first
        )


def split_lines(chunks: Iterable[bytes], start: Position) -> Iterator[tuple[Position, int, bytes]]:
    """``(position, end offset, line bytes)`` of each non-empty line in ``chunks`` (the bytes
    of the file from ``start.offset``); a last line without a newline counts."""
    line, offset = start.line, start.offset
    pending = b""
    for chunk in chunks:
        if not chunk:
            continue
        data = pending + chunk if pending else chunk
        begin = 0
        while (cut := data.find(b"\n", begin)) >= 0:
            raw = data[begin:cut]
            end = offset + (cut + 1 - begin)
            if raw.strip():
                yield Position(line, offset), end, raw
                line += 1
            offset, begin = end, cut + 1
        pending = data[begin:]
    if pending.strip():
        yield Position(line, offset), offset + len(pending), pending


def parse_line(raw: bytes, position: Position) -> dict[str, Any]:
    """One JSONL line as an object."""
    try:
        record = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidLine(f"line {position.line} is not JSON: {exc}") from exc
    if not isinstance(record, dict):
        raise InvalidLine(f"line {position.line} is not a JSON object")
    return record
