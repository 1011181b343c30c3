"""Refresh rotation, the lost-race grace window, reuse detection, revocation (RFC 7009) and
client authentication at the token endpoint."""

from __future__ import annotations

import base64

from tests.integration.ctrwow.conftest import (
    APP_ID,
    APP_SECRET,
    OTHER_ID,
    OTHER_SECRET,
    RunningCtrwow,
)


def test_refresh_rotates_both_tokens(ctrwow: RunningCtrwow) -> None:
    """A refresh returns a new access and a new refresh token, both working."""
    first = ctrwow.connected()
    second = ctrwow.refresh(first["refresh_token"]).json()
    assert second["access_token"] != first["access_token"]
    assert second["refresh_token"] != first["refresh_token"]
    assert ctrwow.me(second["access_token"]).status_code == 200
    assert ctrwow.refresh(second["refresh_token"]).status_code == 200


def test_reuse_within_the_grace_window_returns_the_same_new_pair(ctrwow: RunningCtrwow) -> None:
    """A lost race (old token again within 30 s, new one unused) gets the same replacement."""
    first = ctrwow.connected()
    winner = ctrwow.refresh(first["refresh_token"]).json()
    ctrwow.advance(10)
    loser = ctrwow.refresh(first["refresh_token"])
    assert loser.status_code == 200
    assert loser.json()["access_token"] == winner["access_token"]
    assert loser.json()["refresh_token"] == winner["refresh_token"]
    assert loser.json()["expires_in"] <= 3600 - 10


def test_reuse_after_the_grace_window_revokes_the_family(ctrwow: RunningCtrwow) -> None:
    """Reusing a replaced refresh token after 30 s is refused and revokes the whole grant."""
    first = ctrwow.connected()
    second = ctrwow.refresh(first["refresh_token"]).json()
    ctrwow.advance(31)
    reuse = ctrwow.refresh(first["refresh_token"])
    assert reuse.status_code == 400
    assert reuse.json()["error"] == "invalid_grant"
    assert "reuse" in reuse.json()["error_description"]
    assert ctrwow.me(second["access_token"]).status_code == 401
    assert ctrwow.refresh(second["refresh_token"]).json()["error"] == "invalid_grant"
    [grant] = ctrwow.grants(first["account_id"])
    assert grant["revoked_reason"] == "refresh_token_reuse"


def test_reuse_after_the_replacement_was_used_revokes_the_family(ctrwow: RunningCtrwow) -> None:
    """Within 30 s but after the replacement was itself used, reuse is theft, not a race."""
    first = ctrwow.connected()
    second = ctrwow.refresh(first["refresh_token"]).json()
    third = ctrwow.refresh(second["refresh_token"]).json()
    assert ctrwow.refresh(first["refresh_token"]).json()["error"] == "invalid_grant"
    assert ctrwow.me(third["access_token"]).status_code == 401


def test_refresh_may_narrow_but_not_widen_the_scope(ctrwow: RunningCtrwow) -> None:
    """A refresh with a smaller scope narrows the new pair; a wider one is invalid_scope."""
    first = ctrwow.connected()
    wider = ctrwow.token(
        {"grant_type": "refresh_token", "refresh_token": first["refresh_token"], "scope": "publish"}
    )
    assert wider.json()["error"] == "invalid_scope"
    narrow = ctrwow.token(
        {
            "grant_type": "refresh_token",
            "refresh_token": first["refresh_token"],
            "scope": "account:read",
        }
    )
    assert narrow.json()["scope"] == "account:read"


def test_expired_access_token_is_refused_with_invalid_token(ctrwow: RunningCtrwow) -> None:
    """After an hour the access token gets 401 with WWW-Authenticate error=invalid_token."""
    first = ctrwow.connected()
    ctrwow.advance(3601)
    response = ctrwow.me(first["access_token"])
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert ctrwow.refresh(first["refresh_token"]).status_code == 200


def test_revoking_the_refresh_token_revokes_the_grant(ctrwow: RunningCtrwow) -> None:
    """RFC 7009: revoking the refresh token makes its access token fail as well."""
    first = ctrwow.connected()
    response = ctrwow.http.post(
        "/oauth/revoke",
        data={"token": first["refresh_token"], "token_type_hint": "refresh_token"},
        auth=(APP_ID, APP_SECRET),
    )
    assert response.status_code == 200
    assert ctrwow.me(first["access_token"]).status_code == 401
    assert ctrwow.refresh(first["refresh_token"]).json()["error"] == "invalid_grant"


def test_revoking_an_access_token_leaves_the_refresh_token(ctrwow: RunningCtrwow) -> None:
    """Revoking the access token ends it alone; the grant can still be refreshed."""
    first = ctrwow.connected()
    ctrwow.http.post(
        "/oauth/revoke", data={"token": first["access_token"]}, auth=(APP_ID, APP_SECRET)
    )
    assert ctrwow.me(first["access_token"]).status_code == 401
    assert ctrwow.refresh(first["refresh_token"]).status_code == 200


def test_revoking_an_unknown_token_answers_200(ctrwow: RunningCtrwow) -> None:
    """An unknown token is not an error to revoke (RFC 7009 §2.2)."""
    response = ctrwow.http.post("/oauth/revoke", data={"token": "nope"}, auth=(APP_ID, APP_SECRET))
    assert response.status_code == 200


def test_another_client_cannot_revoke_our_tokens(ctrwow: RunningCtrwow) -> None:
    """A revocation by a client that was not issued the token changes nothing."""
    first = ctrwow.connected()
    ctrwow.http.post(
        "/oauth/revoke", data={"token": first["refresh_token"]}, auth=(OTHER_ID, OTHER_SECRET)
    )
    assert ctrwow.me(first["access_token"]).status_code == 200


def test_client_secret_post_is_accepted(ctrwow: RunningCtrwow) -> None:
    """Client credentials in the form body authenticate like Basic."""
    response = ctrwow.http.post(
        "/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": APP_ID,
            "client_secret": APP_SECRET,
        },
    )
    assert response.status_code == 200
    assert response.json()["scope"] == "partner:accounts"
    assert "refresh_token" not in response.json()


def test_wrong_client_secret_is_invalid_client(ctrwow: RunningCtrwow) -> None:
    """A wrong secret gets 401 invalid_client with a Basic challenge."""
    response = ctrwow.token({"grant_type": "client_credentials"}, auth=(APP_ID, "wrong" * 8))
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert response.headers["www-authenticate"].startswith("Basic")


def test_two_client_authentication_methods_at_once_are_refused(ctrwow: RunningCtrwow) -> None:
    """Basic auth together with client_secret in the body is invalid_request."""
    basic = base64.b64encode(f"{APP_ID}:{APP_SECRET}".encode()).decode()
    response = ctrwow.http.post(
        "/oauth/token",
        data={"grant_type": "client_credentials", "client_secret": APP_SECRET},
        headers={"Authorization": f"Basic {basic}"},
    )
    assert response.json()["error"] == "invalid_request"


def test_non_partner_client_cannot_use_client_credentials(ctrwow: RunningCtrwow) -> None:
    """client_credentials is for partner clients only."""
    response = ctrwow.token({"grant_type": "client_credentials"}, auth=(OTHER_ID, OTHER_SECRET))
    assert response.json()["error"] == "unauthorized_client"


def test_unknown_grant_type_is_refused(ctrwow: RunningCtrwow) -> None:
    """The password grant (or any other) is unsupported_grant_type."""
    response = ctrwow.token({"grant_type": "password", "username": "a", "password": "b"})
    assert response.json()["error"] == "unsupported_grant_type"


def test_tokens_survive_a_restart(ctrwow: RunningCtrwow, tmp_path: object) -> None:
    """Accounts and tokens are in SQLite: a new sandbox on the same file still accepts them."""
    from tests.integration.ctrwow.conftest import running

    first = ctrwow.connected()
    config = ctrwow.app.state.sandbox.config
    with running(config) as restarted:
        assert restarted.me(first["access_token"]).status_code == 200
        assert restarted.refresh(first["refresh_token"]).status_code == 200
