"""The bulk JSONL reader rebuilds products whatever the order of their lines (pitfall 23), with
a bounded buffer, and resumes after a cut without losing a product."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from syncapp.sync.bulk_jsonl import Assembled, Assembler, Position, parse_line, split_lines


def catalog(variant_counts: list[int]) -> list[dict[str, Any]]:
    """The JSONL records of products with these numbers of variants (grouped order)."""
    lines: list[dict[str, Any]] = []
    for p, count in enumerate(variant_counts):
        gid = f"gid://shopify/Product/{p + 1}"
        lines.append({"id": gid, "title": f"P{p}", "variantsCount": {"count": count}})
        lines += [
            {"id": f"gid://shopify/ProductVariant/{(p + 1) * 1000 + v}", "__parentId": gid}
            for v in range(count)
        ]
    return lines


def encode(records: list[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in records)


START = Position(0, 0)


def read(
    data: bytes, capacity: int, start: Position = START, chunk: int = 7
) -> tuple[list[Assembled], Assembler]:
    assembler = Assembler(capacity)
    out: list[Assembled] = []
    chunks = (data[i : i + chunk] for i in range(start.offset, len(data), chunk))
    for position, end, raw in split_lines(chunks, start):
        out += assembler.feed(position, end, parse_line(raw, position))
    return out + assembler.finish(), assembler


def truth(records: list[dict[str, Any]]) -> dict[str, set[str]]:
    products: dict[str, set[str]] = {r["id"]: set() for r in records if "__parentId" not in r}
    for r in records:
        if "__parentId" in r:
            products[r["__parentId"]].add(r["id"])
    return products


shuffled_catalogs = st.lists(st.integers(0, 4), min_size=1, max_size=12).flatmap(
    lambda counts: st.permutations(catalog(counts))
)


@settings(max_examples=150, deadline=None)
@given(records=shuffled_catalogs)
def test_every_product_is_rebuilt_once_whatever_the_order(records: list[dict[str, Any]]) -> None:
    """With room for the whole file, each product comes out once, with exactly its variants
    and none of its __parentId markers."""
    out, assembler = read(encode(records), capacity=len(records) + 1)
    expected = truth(records)
    assert sorted(a.gid for a in out) == sorted(expected)
    for product in out:
        assert product.snapshot is not None
        variants = product.snapshot["variants"]["nodes"]
        assert {v["id"] for v in variants} == expected[product.gid]
        assert all("__parentId" not in v for v in variants)
    assert assembler.buffered_lines == 0
    assert assembler.evicted == 0


@settings(max_examples=150, deadline=None)
@given(records=shuffled_catalogs, capacity=st.integers(1, 6))
def test_a_small_buffer_never_holds_more_than_its_capacity_and_never_lies(
    records: list[dict[str, Any]], capacity: int
) -> None:
    """A buffer smaller than the disorder evicts products (published without a snapshot), but
    every product still comes out, a snapshot is never missing a variant, and memory holds at
    most ``capacity`` lines once a line is handled."""
    out, assembler = read(encode(records), capacity=capacity)
    expected = truth(records)
    assert set(a.gid for a in out) == set(expected)
    assert assembler.peak_buffered <= capacity + 1
    for product in out:
        if product.snapshot is not None:
            got = {v["id"] for v in product.snapshot["variants"]["nodes"]}
            assert got == expected[product.gid]


@settings(max_examples=150, deadline=None)
@given(records=shuffled_catalogs, cut=st.floats(0, 1), capacity=st.integers(1, 8))
def test_resuming_from_the_recorded_position_loses_no_product(
    records: list[dict[str, Any]], cut: float, capacity: int
) -> None:
    """Stopping after any line and resuming at ``resume`` (the cursor's position) emits every
    product that was not emitted before the stop: nothing is lost."""
    data = encode(records)
    assembler = Assembler(capacity)
    before: list[Assembled] = []
    stop_after = int(cut * len(records))
    for n, (position, end, raw) in enumerate(split_lines([data], Position(0, 0))):
        if n >= stop_after:
            break
        before += assembler.feed(position, end, parse_line(raw, position))
    after, _ = read(data, capacity, start=assembler.resume)
    seen = {a.gid for a in before} | {a.gid for a in after}
    assert seen == set(truth(records))


def test_lines_and_offsets_survive_any_chunking() -> None:
    """Chunk borders inside a line, blank lines and a last line without newline are handled;
    offsets point at each line's first byte."""
    data = b'{"id":"a"}\n\n{"id":"bb"}\n{"id":"c"}'
    for size in range(1, len(data) + 1):
        chunks = [data[i : i + size] for i in range(0, len(data), size)]
        got = list(split_lines(chunks, Position(0, 0)))
        assert [(p.line, p.offset, raw) for p, _, raw in got] == [
            (0, 0, b'{"id":"a"}'),
            (1, 12, b'{"id":"bb"}'),
            (2, 24, b'{"id":"c"}'),
        ]
        assert [data[p.offset : end].strip() for p, end, _ in got] == [r for _, _, r in got]


def test_a_parent_after_its_children_is_complete_at_once() -> None:
    """Ungrouped output (children first): the product is emitted when its own line arrives."""
    assembler = Assembler(10)
    records = catalog([2])
    children, parent = records[1:], records[0]
    out: list[Assembled] = []
    for n, record in enumerate([*children, parent]):
        out += assembler.feed(Position(n, n * 10), n * 10 + 10, record)
    assert [a.gid for a in out] == ["gid://shopify/Product/1"]
    assert assembler.resume == Position(3, 30)
