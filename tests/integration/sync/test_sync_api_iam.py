"""eManageCRM IAM access tokens on the Sync API, end to end: the eManageCRM sandbox's IAM
issues an RS256 JWT for the app's API narrowed to one account (RFC 8707 ``resource``), the app
checks it against the IAM's JWKS over HTTP and lets it act on that account's shop only."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterator

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from sqlalchemy import select

from syncapp.onboarding.models import EmanageAccount
from syncapp.store.models import Shop
from tests.integration.app_home.conftest import EMANAGE_ID, EMANAGE_SECRET, Home, running_home
from tests.integration.shops.conftest import handle_for


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Home]:
    tmp = tmp_path_factory.mktemp("sync-iam")
    with running_home(tmp, f"sqlite:///{tmp / 'app.db'}") as home:
        yield home


def signed_up(home: Home, handle: str) -> tuple[str, str]:
    shop = home.system.create_shop(handle)
    home.sign_up(shop)
    with home.system.runtime.sessions() as session:
        account = session.scalar(
            select(EmanageAccount.account_id).join(Shop).where(Shop.domain == shop)
        )
    assert account is not None
    return shop, account


def iam_token(home: Home, **form: str) -> httpx.Response:
    return httpx.post(
        f"{home.emanage_url}/iam/oauth/token",
        data={"grant_type": "client_credentials", **form},
        auth=(EMANAGE_ID, EMANAGE_SECRET),
        timeout=10,
    )


def _hs256_with_public_key(payload: dict[str, object], jwk: dict[str, str]) -> str:
    """The classic forgery: HS256 keyed with the IAM's public key (PEM), by hand (PyJWT
    refuses to build it)."""
    public = RSAAlgorithm.from_jwk(json.dumps(jwk))
    pem = public.public_bytes(  # type: ignore[union-attr]
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )

    def part(value: bytes) -> str:
        return base64.urlsafe_b64encode(value).rstrip(b"=").decode()

    head = {"alg": "HS256", "kid": jwk["kid"], "typ": "at+jwt"}
    signing_input = f"{part(json.dumps(head).encode())}.{part(json.dumps(payload).encode())}"
    mac = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{part(mac)}"


def status(home: Home, shop: str, token: str) -> httpx.Response:
    return home.system.app.get(
        f"/api/v1/shops/{shop}/sync", headers={"Authorization": f"Bearer {token}"}
    )


def test_a_token_for_one_account_reads_that_shop_only(
    home: Home, request: pytest.FixtureRequest
) -> None:
    shop, account = signed_up(home, handle_for(request, "a"))
    other, _ = signed_up(home, handle_for(request, "b"))
    answer = iam_token(
        home,
        resource=f"{home.system.app_url}/api",
        account_id=account,
        scope="sync:read",
    )
    assert answer.status_code == 200, answer.text
    token = answer.json()["access_token"]
    assert jwt.get_unverified_header(token)["typ"] == "at+jwt"
    assert status(home, shop, token).status_code == 200
    refused = status(home, other, token)
    assert refused.status_code == 403
    assert refused.json()["detail"] == "this key is for another shop"
    write = home.system.app.put(
        f"/api/v1/shops/{shop}/settings",
        json={"keep_products_synchronized": False},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert write.status_code == 403  # sync:write was not granted


def test_tokens_the_api_must_refuse(home: Home, request: pytest.FixtureRequest) -> None:
    shop, account = signed_up(home, handle_for(request, "c"))
    api = f"{home.system.app_url}/api"
    wrong_audience = iam_token(home, resource="https://elsewhere.example/api", account_id=account)
    no_account = iam_token(home, resource=api, scope="sync:read")
    opaque = iam_token(home, account_id=account, scope="sync:read")  # no resource: emt_ token
    good = iam_token(home, resource=api, account_id=account, scope="sync:read")
    for refused in (wrong_audience, no_account, opaque):
        assert refused.status_code == 200, refused.text
        assert status(home, shop, refused.json()["access_token"]).status_code == 401
    token = good.json()["access_token"]
    header, claims, _ = token.split(".")
    # The same claims signed by another key, with HS256 on the public JWK, and unsigned.
    payload = json.loads(base64.urlsafe_b64decode(claims + "=="))
    keys = httpx.get(f"{home.emanage_url}/iam/.well-known/jwks.json", timeout=10).json()
    kid = keys["keys"][0]["kid"]
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(payload, stranger, "RS256", headers={"kid": kid, "typ": "at+jwt"})
    hmac_on_public = _hs256_with_public_key(payload, keys["keys"][0])
    unsigned = f"{header}.{claims}."
    for bad in (forged, hmac_on_public, unsigned, token[:-4] + "AAAA"):
        assert status(home, shop, bad).status_code == 401
    assert status(home, shop, token).status_code == 200


def test_a_bad_resource_is_refused_by_the_iam(home: Home) -> None:
    answer = iam_token(home, resource="not a uri")
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_target"


def test_a_write_token_of_one_account_resyncs_that_shop_only(
    home: Home, request: pytest.FixtureRequest
) -> None:
    """POST …/resync with an IAM token granted sync:write: its own shop 202, another 403."""
    shop, account = signed_up(home, handle_for(request, "w"))
    other, _ = signed_up(home, handle_for(request, "x"))
    answer = iam_token(
        home, resource=f"{home.system.app_url}/api", account_id=account, scope="sync:write"
    )
    assert answer.status_code == 200, answer.text
    headers = {"Authorization": f"Bearer {answer.json()['access_token']}"}
    body = {"object": "gid://shopify/Product/5"}
    mine = home.system.app.post(f"/api/v1/shops/{shop}/resync", json=body, headers=headers)
    assert mine.status_code == 202, mine.text
    theirs = home.system.app.post(f"/api/v1/shops/{other}/resync", json=body, headers=headers)
    assert theirs.status_code == 403
    assert theirs.json()["detail"] == "this key is for another shop"


def test_expired_and_future_tokens_are_refused(home: Home, request: pytest.FixtureRequest) -> None:
    """Last in the module: it moves the sandbox's clock. An IAM token that expired (signed with
    the IAM's own key, an hour ago) and one issued an hour in the app's future are refused."""
    shop, account = signed_up(home, handle_for(request, "d"))
    api = f"{home.system.app_url}/api"
    fresh = iam_token(home, resource=api, account_id=account, scope="sync:read")
    token = fresh.json()["access_token"]
    assert status(home, shop, token).status_code == 200
    claims = jwt.decode(token, options={"verify_signature": False})
    key_file = home.system.settings.data_dir / "emanage.iam-key.pem"
    iam_key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    expired = jwt.encode(
        {**claims, "iat": claims["iat"] - 3600, "exp": claims["iat"] - 900},
        iam_key,  # type: ignore[arg-type]
        "RS256",
        headers=jwt.get_unverified_header(token),
    )
    assert status(home, shop, expired).status_code == 401
    moved = httpx.post(
        f"{home.emanage_url}/_sandbox/clock", json={"advanceSeconds": 3600}, timeout=10
    )
    assert moved.status_code == 200, moved.text
    future = iam_token(home, resource=api, account_id=account, scope="sync:read")
    assert status(home, shop, future.json()["access_token"]).status_code == 401
