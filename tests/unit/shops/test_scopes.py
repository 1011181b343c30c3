"""granted_scopes(): the whole grant from an app/scopes_update payload, or a clear error."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncapp.shops.scopes import InvalidScopesUpdate, granted_scopes

handles = st.lists(st.text(min_size=1, max_size=30), max_size=20)


@given(current=handles, previous=handles)
def test_the_current_list_is_the_grant(current: list[str], previous: list[str]) -> None:
    payload = json.dumps({"id": 7, "previous": previous, "current": current})
    assert granted_scopes(payload) == current


@pytest.mark.parametrize(
    "payload",
    [
        "not json",
        "[]",
        json.dumps({"previous": ["read_products"]}),
        json.dumps({"current": "read_products,write_products"}),
        json.dumps({"current": ["read_products", 3]}),
        json.dumps({"current": ["read_products", ""]}),
    ],
)
def test_a_payload_without_a_list_of_handles_is_refused(payload: str) -> None:
    with pytest.raises(InvalidScopesUpdate):
        granted_scopes(payload)
