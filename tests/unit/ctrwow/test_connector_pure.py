"""The connector's pure parts: PKCE, the authorization URL, answer parsing and the mapping
from HTTP answers to the error tree."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from syncapp.connectors.ctrwow import oauth
from syncapp.connectors.ctrwow.errors import (
    CtrwowConflict,
    CtrwowInsufficientScope,
    CtrwowInvalidClient,
    CtrwowInvalidGrant,
    CtrwowInvalidToken,
    CtrwowPermanentError,
    CtrwowRateLimited,
    CtrwowTransientError,
    error_from_response,
)
from syncapp.sandbox.ctrwow.tokens import pkce_matches

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
VERIFIER_CHARS = st.sampled_from(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
)


def test_s256_matches_the_rfc_7636_example() -> None:
    """The challenge of RFC 7636 Appendix B's verifier is the one the RFC gives."""
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert oauth.code_challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


@given(st.text(VERIFIER_CHARS, min_size=43, max_size=128))
def test_the_sandbox_accepts_every_challenge_the_connector_makes(verifier: str) -> None:
    """For any valid verifier, the connector's challenge verifies on the server side."""
    assert pkce_matches(verifier, oauth.code_challenge(verifier))


@given(st.text(VERIFIER_CHARS, min_size=43, max_size=128))
def test_a_challenge_never_verifies_as_its_own_verifier(verifier: str) -> None:
    """Sending the challenge as verifier (a plain downgrade) never passes S256."""
    challenge = oauth.code_challenge(verifier)
    assert not pkce_matches(challenge, challenge) or challenge == verifier


def test_too_short_verifier_is_refused() -> None:
    """RFC 7636 needs at least 43 characters."""
    with pytest.raises(ValueError, match="43-128"):
        oauth.code_challenge("short")


def test_new_verifiers_are_valid_and_distinct() -> None:
    """Fresh verifiers follow the RFC alphabet and never repeat."""
    made = {oauth.new_code_verifier() for _ in range(50)}
    assert len(made) == 50
    assert all(oauth.CODE_VERIFIER_PATTERN.match(v) for v in made)


def test_authorization_url_carries_pkce_and_the_prefill() -> None:
    """The URL has response_type=code, S256, the scopes space-joined and the hints."""
    url = oauth.authorization_url(
        "http://ctrwow.test/",
        client_id="app",
        redirect_uri="https://app.test/cb",
        state="s1",
        code_verifier="a" * 43,
        scopes=["account:read", "templates:read"],
        login_hint="m@shop.example",
        shop_domain="shop.myshopify.com",
    )
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert parts.path == "/oauth/authorize"
    assert query["code_challenge_method"] == "S256"
    assert query["code_challenge"] == oauth.code_challenge("a" * 43)
    assert query["scope"] == "account:read templates:read"
    assert query["login_hint"] == "m@shop.example"
    assert "account_name" not in query


def test_token_pair_expiry_is_computed_from_expires_in() -> None:
    """expires_at is arrival time plus expires_in."""
    pair = oauth.parse_token_pair(
        {
            "access_token": "a",
            "refresh_token": "r",
            "token_type": "Bearer",
            "expires_in": 3600,
            "scope": "account:read publish",
        },
        now=NOW,
    )
    assert pair.expires_at == NOW + timedelta(hours=1)
    assert pair.scope == frozenset({"account:read", "publish"})


def test_token_answer_without_refresh_token_is_off_contract() -> None:
    """A pair must have a refresh token; its absence is a permanent error, not a crash."""
    with pytest.raises(CtrwowPermanentError, match="refresh_token"):
        oauth.parse_token_pair(
            {"access_token": "a", "token_type": "Bearer", "expires_in": 1}, now=NOW
        )


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (400, {"error": "invalid_grant"}, CtrwowInvalidGrant),
        (401, {"error": "invalid_client"}, CtrwowInvalidClient),
        (401, {"code": "invalid_token"}, CtrwowInvalidToken),
        (403, {"code": "insufficient_scope"}, CtrwowInsufficientScope),
        (409, {"code": "account_exists", "account_id": "acc_1"}, CtrwowConflict),
        (422, {"code": "idempotency_key_reused"}, CtrwowPermanentError),
        (404, None, CtrwowPermanentError),
        (502, None, CtrwowTransientError),
        (429, {"code": "rate_limited"}, CtrwowRateLimited),
    ],
)
def test_http_answers_map_to_the_error_tree(
    status: int, body: object, expected: type[Exception]
) -> None:
    """Each kind of answer becomes the documented error class."""
    error = error_from_response(status, {}, body)
    assert type(error) is expected
    assert error.status == status


def test_conflict_names_the_existing_account() -> None:
    """A 409 with account_id carries it as existing_id."""
    error = error_from_response(409, {}, {"code": "account_exists", "account_id": "acc_1"})
    assert isinstance(error, CtrwowConflict)
    assert error.existing_id == "acc_1"


def test_rate_limit_without_retry_after_still_has_one() -> None:
    """429 always carries a retry_after, one second when CTRwow gave none."""
    error = error_from_response(429, {}, None)
    assert isinstance(error, CtrwowRateLimited)
    assert error.retry_after == 1.0


def test_retry_after_http_date_counts_from_the_given_now() -> None:
    """A 503's HTTP-date Retry-After is seconds from the ``now`` CTRwow's mapping is given."""
    headers = {"retry-after": "Sun, 01 Nov 2026 12:00:30 GMT"}
    error = error_from_response(503, headers, None, now=NOW.timestamp())
    assert isinstance(error, CtrwowTransientError)
    assert error.retry_after == 30.0
