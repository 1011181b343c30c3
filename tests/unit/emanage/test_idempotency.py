"""The sandbox's request fingerprint for Idempotency-Key: equal for the same meaning only."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from syncapp.sandbox.emanage.idempotency import fingerprint

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=12,
)
bodies = st.dictionaries(st.text(max_size=8), json_values, max_size=6)


@given(bodies)
def test_key_order_and_whitespace_do_not_change_the_fingerprint(body: dict[str, Any]) -> None:
    """A body re-serialised differently is the same request."""
    compact = json.dumps(body, separators=(",", ":")).encode()
    spaced = json.dumps(dict(reversed(list(body.items()))), indent=2).encode()
    assert fingerprint("POST", "/a", compact) == fingerprint("POST", "/a", spaced)


@given(bodies, bodies)
def test_different_bodies_have_different_fingerprints(a: dict[str, Any], b: dict[str, Any]) -> None:
    """Bodies that differ as JSON are different requests."""
    if a != b:
        assert fingerprint("POST", "/a", json.dumps(a).encode()) != fingerprint(
            "POST", "/a", json.dumps(b).encode()
        )


def test_the_path_is_part_of_the_fingerprint() -> None:
    """The same body to another account's path is another request."""
    assert fingerprint("POST", "/accounts/a/users", b"{}") != fingerprint(
        "POST", "/accounts/b/users", b"{}"
    )
