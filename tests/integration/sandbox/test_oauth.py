"""The sandbox's token endpoint against Shopify's own Python client (``shopifyapp``), unchanged,
over real HTTP: token exchange, refusal of bad ID tokens, refresh rotation and its resilience
rule, one live offline token per shop, and the install/uninstall control routes."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from shopify_app import ShopifyApp
from shopify_app.types import IdTokenDetails, TokenExchangeAccessToken, TokenExchangeResult

from syncapp.sandbox.shopify import tokens
from syncapp.sandbox.shopify.oauth import mint_id_token

from .conftest import CLIENT_ID, CLIENT_SECRET, RunningSandbox

OTHER_SHOP = "other.myshopify.com"


@pytest.fixture
def sandbox(shared_sandbox: RunningSandbox) -> RunningSandbox:
    """Every test here works on its own shop, so they share one sandbox."""
    return shared_sandbox


def shopify_app() -> ShopifyApp:
    return ShopifyApp(client_id=CLIENT_ID, client_secret=CLIENT_SECRET)


def verified_id_token(token: str) -> IdTokenDetails:
    """What the app's App Home handler gets from shopifyapp for a fetch with this ID token."""
    shop = jwt.decode(token, options={"verify_signature": False})["dest"].removeprefix("https://")
    result = shopify_app().verify_app_home_req(
        {
            "method": "GET",
            "headers": {"Authorization": f"Bearer {token}"},
            "url": f"https://syncapp.example.com/api/status?shop={shop}",
            "body": "",
        },
        app_home_patch_id_token_path="/auth/patch-id-token",
    )
    assert result.ok, result.log
    assert result.id_token is not None
    return result.id_token


def unverified_details(token: str) -> dict[str, Any]:
    """ID token details as the library expects them, for tokens it would itself refuse."""
    claims = jwt.decode(token, options={"verify_signature": False, "verify_aud": False})
    return {"exchangeable": True, "token": token, "claims": claims}


def exchange(
    sandbox: RunningSandbox,
    id_token: IdTokenDetails | dict[str, Any],
    mode: str = "offline",
    app: ShopifyApp | None = None,
) -> TokenExchangeResult:
    with sandbox.shop_client() as http:
        return (app or shopify_app()).exchange_using_token_exchange(
            mode, id_token=id_token, http_client=http
        )


def refresh(sandbox: RunningSandbox, token: TokenExchangeAccessToken) -> TokenExchangeResult:
    """Refresh through shopifyapp; its token is made to look about to expire so it refreshes."""
    almost_expired = {
        "shop": token.shop,
        "token": token.token,
        "expires": (datetime.now(UTC) + timedelta(seconds=10)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "scope": token.scope,
        "access_mode": token.access_mode,
        "refresh_token": token.refresh_token,
        "refresh_token_expires": token.refresh_token_expires,
        "user": None,
    }
    with sandbox.shop_client() as http:
        return shopify_app().refresh_token_exchanged_access_token(almost_expired, http_client=http)


def offline_token(sandbox: RunningSandbox, shop: str) -> TokenExchangeAccessToken:
    result = exchange(sandbox, verified_id_token(sandbox.id_token(shop)))
    assert result.ok, result.log
    assert result.access_token is not None
    return result.access_token


def live_shop(sandbox: RunningSandbox, access_token: str) -> str | None:
    """Authenticate an Admin API call with ``access_token``, as the Admin API does."""
    with sandbox.state.db.transaction() as conn:
        return tokens.shop_for_access_token(conn, access_token)


def test_shopifyapp_exchanges_an_id_token_for_an_expiring_offline_token(
    sandbox: RunningSandbox, shop: str
) -> None:
    """shopifyapp's token exchange gets a one-hour offline token and a 90-day refresh token."""
    token = offline_token(sandbox, shop)

    expires = datetime.fromisoformat(str(token.expires).replace("Z", "+00:00"))
    refresh_expires = datetime.fromisoformat(
        str(token.refresh_token_expires).replace("Z", "+00:00")
    )
    assert token.shop == shop.removesuffix(".myshopify.com")
    assert token.token.startswith("shpat_")
    assert str(token.refresh_token).startswith("shprt_")
    assert abs((expires - datetime.now(UTC)).total_seconds() - 3600) < 30
    assert abs((refresh_expires - datetime.now(UTC)).total_seconds() - 90 * 86400) < 30
    assert "write_products" in token.scope.split(",")
    assert live_shop(sandbox, token.token) == shop


def test_online_token_exchange_names_the_staff_user(sandbox: RunningSandbox, shop: str) -> None:
    """An online token exchange returns the ID token's user as the associated user."""
    result = exchange(sandbox, verified_id_token(sandbox.id_token(shop, user_id=42)), mode="online")

    assert result.ok, result.log
    assert result.access_token is not None
    assert result.access_token.user is not None
    assert result.access_token.user.id == 42
    assert result.access_token.refresh_token is None
    assert live_shop(sandbox, result.access_token.token) == shop


def test_an_expired_id_token_is_refused(sandbox: RunningSandbox, shop: str) -> None:
    """An ID token past its expiry (beyond the 10 s leeway) is refused as an invalid subject."""
    stale = mint_id_token(sandbox.config, shop, now=time.time() - 120)

    result = exchange(sandbox, unverified_details(stale))

    assert not result.ok
    assert result.log.code == "invalid_subject_token"
    assert result.http_logs[-1].res.status == 400


def test_an_id_token_within_the_clock_leeway_is_accepted(
    sandbox: RunningSandbox, shop: str
) -> None:
    """An ID token that expired 5 s ago still passes, as Shopify allows 10 s of clock skew."""
    just_expired = mint_id_token(sandbox.config, shop, lifetime=55, now=time.time() - 60)

    result = exchange(sandbox, unverified_details(just_expired))

    assert result.ok, result.log


def test_a_forged_id_token_is_refused(sandbox: RunningSandbox, shop: str) -> None:
    """An ID token signed with another secret is refused as an invalid subject."""
    claims = jwt.decode(sandbox.id_token(shop), options={"verify_signature": False})
    forged = jwt.encode(claims, "shpss_forgedforgedforgedforgedforged0", algorithm="HS256")

    result = exchange(sandbox, unverified_details(forged))

    assert result.log.code == "invalid_subject_token"


def test_an_id_token_for_another_app_is_refused(sandbox: RunningSandbox, shop: str) -> None:
    """An ID token whose audience is another app's client id is refused."""
    claims = jwt.decode(sandbox.id_token(shop), options={"verify_signature": False})
    claims["aud"] = "another-app-client-id"
    other_app = jwt.encode(claims, CLIENT_SECRET, algorithm="HS256")

    result = exchange(sandbox, unverified_details(other_app))

    assert result.log.code == "invalid_subject_token"


def test_an_id_token_for_another_shop_is_refused_on_this_shops_host(
    sandbox: RunningSandbox, shop: str
) -> None:
    """An ID token whose ``dest`` names another shop cannot get a token for this shop."""
    sandbox.create_shop(OTHER_SHOP)
    other = unverified_details(sandbox.id_token(OTHER_SHOP))
    with sandbox.shop_client() as http:
        response = http.post(
            f"https://{shop}/admin/oauth/access_token",
            json={
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
                "subject_token": other["token"],
                "subject_token_type": "urn:ietf:params:oauth:token-type:id_token",
                "requested_token_type": "urn:shopify:params:oauth:token-type:offline-access-token",
                "expiring": 1,
            },
        )

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_subject_token"


def test_a_wrong_client_secret_is_refused_as_invalid_client(
    sandbox: RunningSandbox, shop: str
) -> None:
    """Client credentials that are not the app's are refused with ``invalid_client``."""
    impostor = ShopifyApp(client_id=CLIENT_ID, client_secret="wrong-secret")

    result = exchange(sandbox, unverified_details(sandbox.id_token(shop)), app=impostor)

    assert result.log.code == "invalid_client"


def test_a_form_encoded_token_exchange_is_accepted(sandbox: RunningSandbox, shop: str) -> None:
    """The token endpoint reads form bodies as well as JSON, as Shopify's does."""
    with sandbox.shop_client() as http:
        response = http.post(
            f"https://{shop}/admin/oauth/access_token",
            data={
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
                "subject_token": sandbox.id_token(shop),
                "subject_token_type": "urn:ietf:params:oauth:token-type:id_token",
                "requested_token_type": "urn:shopify:params:oauth:token-type:offline-access-token",
                "expiring": "1",
            },
        )

    assert response.status_code == 200, response.text
    assert set(response.json()) == {
        "access_token",
        "scope",
        "expires_in",
        "refresh_token",
        "refresh_token_expires_in",
    }


def test_a_new_token_exchange_revokes_the_previous_offline_token(
    sandbox: RunningSandbox, shop: str
) -> None:
    """Only one expiring offline token is live per app and shop: the newest."""
    first = offline_token(sandbox, shop)
    second = offline_token(sandbox, shop)

    assert live_shop(sandbox, first.token) is None
    assert live_shop(sandbox, second.token) == shop
    assert refresh(sandbox, first).log.code == "invalid_grant"


def test_a_custom_app_token_leaves_the_apps_offline_token_alone(
    sandbox: RunningSandbox, shop: str
) -> None:
    """A merchant custom-app token does not revoke the app's offline token, nor the reverse."""
    app_token = offline_token(sandbox, shop)
    custom = sandbox.control.post(f"/_sandbox/shops/{shop}/custom_token").json()["access_token"]
    newer_app_token = offline_token(sandbox, shop)

    assert live_shop(sandbox, custom) == shop
    assert live_shop(sandbox, app_token.token) is None
    assert live_shop(sandbox, newer_app_token.token) == shop


def test_refresh_rotates_both_the_access_and_the_refresh_token(
    sandbox: RunningSandbox, shop: str
) -> None:
    """shopifyapp's refresh gets a new access token and a new refresh token."""
    first = offline_token(sandbox, shop)

    result = refresh(sandbox, first)

    assert result.ok, result.log
    assert result.access_token is not None
    assert result.access_token.token != first.token
    assert result.access_token.refresh_token not in (None, first.refresh_token)
    assert live_shop(sandbox, result.access_token.token) == shop


def test_the_old_refresh_token_works_until_the_new_access_token_is_used(
    sandbox: RunningSandbox, shop: str
) -> None:
    """Before the replacement is used, the previous refresh token can refresh again."""
    first = offline_token(sandbox, shop)
    replacement = refresh(sandbox, first)
    assert replacement.ok

    retry = refresh(sandbox, first)

    assert retry.ok, retry.log


def test_using_the_new_access_token_retires_the_old_refresh_token(
    sandbox: RunningSandbox, shop: str
) -> None:
    """The first Admin call with the replacement token makes the old refresh token invalid."""
    first = offline_token(sandbox, shop)
    replacement = refresh(sandbox, first)
    assert replacement.access_token is not None

    assert live_shop(sandbox, replacement.access_token.token) == shop
    after_use = refresh(sandbox, first)

    assert after_use.log.code == "invalid_grant"
    assert live_shop(sandbox, first.token) is None


def test_using_the_new_refresh_token_retires_the_old_one(
    sandbox: RunningSandbox, shop: str
) -> None:
    """Refreshing with the replacement refresh token retires the one it replaced."""
    first = offline_token(sandbox, shop)
    second = refresh(sandbox, first)
    assert second.access_token is not None

    third = refresh(sandbox, second.access_token)

    assert third.ok, third.log
    assert refresh(sandbox, first).log.code == "invalid_grant"


def test_racing_refreshes_leave_exactly_the_used_pair_live(
    sandbox: RunningSandbox, shop: str
) -> None:
    """Two refreshes with one token both succeed; using one result revokes the other."""
    first = offline_token(sandbox, shop)
    winner, loser = refresh(sandbox, first), refresh(sandbox, first)
    assert winner.access_token is not None
    assert loser.access_token is not None

    assert live_shop(sandbox, winner.access_token.token) == shop

    assert live_shop(sandbox, loser.access_token.token) is None
    assert refresh(sandbox, loser.access_token).log.code == "invalid_grant"
    assert refresh(sandbox, winner.access_token).ok


def test_an_unknown_refresh_token_is_refused_as_invalid_grant(
    sandbox: RunningSandbox, shop: str
) -> None:
    """A refresh token the sandbox never issued gets ``invalid_grant``, HTTP 400."""
    first = offline_token(sandbox, shop)
    made_up = TokenExchangeAccessToken(
        shop=first.shop,
        token=first.token,
        expires=first.expires,
        scope=first.scope,
        access_mode="offline",
        refresh_token="shprt_" + "0" * 32,
        refresh_token_expires=first.refresh_token_expires,
        user=None,
    )

    result = refresh(sandbox, made_up)

    assert result.log.code == "invalid_grant"
    assert result.http_logs[-1].res.status == 400


def test_an_expired_refresh_token_is_refused(sandbox: RunningSandbox, shop: str) -> None:
    """A refresh token past its 90-day life cannot refresh."""
    first = offline_token(sandbox, shop)
    later = time.time() + 91 * 86400

    with (
        sandbox.state.db.transaction() as conn,
        pytest.raises(tokens.InvalidRefreshToken, match="expired"),
    ):
        tokens.refresh_offline_token(conn, shop, str(first.refresh_token), now=later)


def test_an_expired_access_token_no_longer_authenticates(
    sandbox: RunningSandbox, shop: str
) -> None:
    """An offline access token stops working an hour after it was issued."""
    token = offline_token(sandbox, shop)

    with sandbox.state.db.transaction() as conn:
        assert tokens.shop_for_access_token(conn, token.token, now=time.time() + 3601) is None


def test_a_refresh_token_of_another_shop_is_refused(sandbox: RunningSandbox, shop: str) -> None:
    """A refresh token only works on the host of the shop it was issued for."""
    sandbox.create_shop(OTHER_SHOP)
    mine = offline_token(sandbox, shop)
    with sandbox.shop_client() as http:
        response = http.post(
            f"https://{OTHER_SHOP}/admin/oauth/access_token",
            json={
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "grant_type": "refresh_token",
                "refresh_token": mine.refresh_token,
            },
        )

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_the_minted_id_token_passes_shopifyapps_app_home_verification(
    sandbox: RunningSandbox, shop: str
) -> None:
    """mint_id_token's claims are what shopifyapp's App Home verification expects."""
    details = verified_id_token(mint_id_token(sandbox.config, shop, user_id=7))

    assert details.claims["dest"] == f"https://{shop}"
    assert details.claims["iss"] == f"https://{shop}/admin"
    assert details.claims["sub"] == "7"
    assert {"exp", "nbf", "iat", "jti", "sid"} <= set(details.claims)


def test_uninstalling_revokes_the_apps_tokens(sandbox: RunningSandbox, shop: str) -> None:
    """After uninstall the offline token is dead and token exchange is refused."""
    token = offline_token(sandbox, shop)

    response = sandbox.control.post(f"/_sandbox/shops/{shop}/uninstall")

    assert response.status_code == 200
    assert live_shop(sandbox, token.token) is None
    assert (
        exchange(sandbox, unverified_details(sandbox.id_token(shop))).log.code == "invalid_client"
    )


def test_reinstalling_allows_token_exchange_again(sandbox: RunningSandbox, shop: str) -> None:
    """A reinstalled app can exchange ID tokens again."""
    sandbox.control.post(f"/_sandbox/shops/{shop}/uninstall")

    sandbox.control.post(f"/_sandbox/shops/{shop}/install")

    assert exchange(sandbox, verified_id_token(sandbox.id_token(shop))).ok


def test_control_routes_do_not_answer_on_a_shops_host(sandbox: RunningSandbox, shop: str) -> None:
    """``/_sandbox/...`` is not part of Shopify: a shop's host gets 404 for it."""
    with sandbox.shop_client() as http:
        response = http.post(f"https://{shop}/_sandbox/shops", json={"domain": "x"})

    assert response.status_code == 404


def test_the_token_endpoint_does_not_answer_on_the_sandboxs_own_address(
    sandbox: RunningSandbox, shop: str
) -> None:
    """The token endpoint belongs to a shop's host, as on Shopify."""
    response = sandbox.control.post("/admin/oauth/access_token", json={})

    assert response.status_code == 404


def test_creating_a_shop_returns_it_and_is_idempotent(sandbox: RunningSandbox, shop: str) -> None:
    """POST /_sandbox/shops creates a shop once and returns the same one again."""
    created = sandbox.control.post(
        "/_sandbox/shops", json={"domain": "Fresh", "plan_name": "Plus", "currency_code": "EUR"}
    )
    again = sandbox.control.post("/_sandbox/shops", json={"domain": "fresh.myshopify.com"})

    assert created.status_code == 201
    assert created.json()["domain"] == "fresh.myshopify.com"
    assert created.json()["plan_name"] == "Plus"
    assert again.status_code == 200
    assert again.json()["id"] == created.json()["id"]


def test_an_id_token_for_an_unknown_shop_is_not_minted(sandbox: RunningSandbox, shop: str) -> None:
    """The control route refuses to mint ID tokens for shops that do not exist."""
    response = sandbox.control.post("/_sandbox/shops/nowhere/id_token")

    assert response.status_code == 404
