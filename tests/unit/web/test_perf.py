"""Server-Timing values and the checking of App Bridge web vitals reports."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncapp.web.app_home.perf import BadReport, ServerTiming, parse_web_vitals


def test_server_timing_sums_each_part_and_keeps_notes() -> None:
    timing = ServerTiming()
    with timing.measure("db"):
        pass
    with timing.measure("db"):
        pass
    with timing.measure("render"):
        pass
    timing.note("emanage", "cached")
    header = timing.header()
    assert re.fullmatch(r'db;dur=\d+\.\d, render;dur=\d+\.\d, emanage;desc="cached"', header)


def test_a_report_and_a_single_metric_are_both_read() -> None:
    report = {
        "appId": "a",
        "metrics": [
            {"id": "1", "name": "LCP", "value": 812.5},
            {"id": "2", "name": "CLS", "value": 0.02},
        ],
    }
    assert parse_web_vitals(report) == [("LCP", 812.5), ("CLS", 0.02)]
    assert parse_web_vitals({"id": "x", "name": "inp", "value": 40}) == [("INP", 40.0)]


@pytest.mark.parametrize(
    "body",
    [
        [],
        "LCP",
        {"metrics": []},
        {"metrics": [{"name": "LCP", "value": 1}] * 11},
        {"name": "FID", "value": 10},
        {"name": "LCP", "value": "fast"},
        {"name": "LCP", "value": True},
        {"name": "LCP", "value": -1},
        {"name": "LCP", "value": float("nan")},
        {"name": "CLS", "value": 1000},
        {"metrics": ["LCP"]},
    ],
)
def test_anything_else_is_refused(body: object) -> None:
    with pytest.raises(BadReport):
        parse_web_vitals(body)


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_a_value_is_recorded_only_when_finite_and_in_range(value: float) -> None:
    try:
        [(name, got)] = parse_web_vitals({"name": "INP", "value": value})
    except BadReport:
        assert not 0 <= value <= 60_000
    else:
        assert name == "INP"
        assert got == value
