"""The app's EmanageClient against the sandbox served by uvicorn on a free port, over real
HTTP: onboarding calls, models, token caching and renewal, and the error tree."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from syncapp.connectors.emanage import (
    EmanageAuthError,
    EmanageClient,
    EmanageConflict,
    EmanageForbidden,
    EmanageIdempotencyMismatch,
    EmanageNotFound,
    EmanageRateLimited,
    EmanageTransientError,
    EmanageValidationError,
    is_transient,
)
from syncapp.sandbox.emanage import create_app
from tests.integration.emanage.conftest import (
    CLIENT_ID,
    CLIENT_SECRET,
    OTHER_CLIENT_ID,
    OTHER_CLIENT_SECRET,
    sandbox_config,
    serve,
)
from tests.integration.emanage.contract import ContractCheckingTransport

pytestmark = pytest.mark.anyio


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def served(tmp_path: Path) -> Iterator[str]:
    with serve(lambda url: create_app(sandbox_config(tmp_path, public_url=url))) as base_url:
        yield base_url


@pytest.fixture
async def live(served: str) -> AsyncIterator[tuple[httpx.AsyncClient, ContractCheckingTransport]]:
    transport = ContractCheckingTransport(httpx.AsyncHTTPTransport())
    async with httpx.AsyncClient(transport=transport, timeout=5) as http:
        yield http, transport


def make_client(
    served: str, http: httpx.AsyncClient, clock: FakeClock | None = None, **kw: str
) -> EmanageClient:
    return EmanageClient(
        http,
        served,
        kw.get("client_id", CLIENT_ID),
        kw.get("client_secret", CLIENT_SECRET),
        **({"clock": clock} if clock else {}),
    )


async def test_onboarding_creates_account_user_link_and_reads_providers(
    served: str, live: tuple[httpx.AsyncClient, ContractCheckingTransport]
) -> None:
    """The whole onboarding path through the connector returns typed models."""
    http, _ = live
    client = make_client(served, http)
    account = await client.create_account(
        shop_domain="demo.myshopify.com",
        name="Demo",
        email="o@demo.example",
        currency="USD",
        idempotency_key="onboard:demo:account",
    )
    user = await client.create_user(
        account_id=account.id,
        email="o@demo.example",
        name="Owner",
        idempotency_key="onboard:demo:user",
    )
    link = await client.create_sso_link(
        account_id=account.id,
        user_id=user.id,
        idempotency_key="sso:1",
        redirect_path="/crm/payment-providers",
    )
    await http.post(
        f"{served}/_sandbox/accounts/{account.id}/payment-providers",
        json={"isActive": True, "mid": "MID-7"},
    )
    providers = await client.list_payment_providers(account_id=account.id)
    assert account.kind == "shared"
    assert account.shop_domain == "demo.myshopify.com"
    assert (await client.get_account(account_id=account.id)) == account
    assert [u.id for u in await client.list_users(account_id=account.id)] == [user.id]
    assert link.url.startswith(served + "/sso/")
    assert providers[0].can_take_payments
    assert providers[0].mids[0].mid == "MID-7"


async def test_a_retried_account_creation_converges_on_one_account(
    served: str, live: tuple[httpx.AsyncClient, ContractCheckingTransport]
) -> None:
    """Same key: same account; new key: EmanageConflict naming that account."""
    http, _ = live
    client = make_client(served, http)
    kwargs = {
        "shop_domain": "demo.myshopify.com",
        "name": "Demo",
        "email": "o@demo.example",
        "currency": "USD",
    }
    first = await client.create_account(**kwargs, idempotency_key="k-1")
    again = await client.create_account(**kwargs, idempotency_key="k-1")
    with pytest.raises(EmanageConflict) as conflict:
        await client.create_account(**kwargs, idempotency_key="k-2")
    assert again == first
    assert conflict.value.existing_id == str(first.id)


async def test_a_reused_key_with_another_body_is_an_idempotency_mismatch(
    served: str, live: tuple[httpx.AsyncClient, ContractCheckingTransport]
) -> None:
    """The 422 idempotency_key_reused maps to EmanageIdempotencyMismatch."""
    http, _ = live
    client = make_client(served, http)
    await client.create_account(
        shop_domain="a.myshopify.com",
        name="A",
        email="a@a.example",
        currency="USD",
        idempotency_key="k-1",
    )
    with pytest.raises(EmanageIdempotencyMismatch):
        await client.create_account(
            shop_domain="b.myshopify.com",
            name="B",
            email="b@b.example",
            currency="USD",
            idempotency_key="k-1",
        )


async def test_linking_with_a_bad_code_is_a_validation_error(
    served: str, live: tuple[httpx.AsyncClient, ContractCheckingTransport]
) -> None:
    """link_code_invalid comes back as EmanageValidationError with the server's message."""
    http, _ = live
    sub = (await http.post(f"{served}/_sandbox/subscriptions", json={})).json()
    client = make_client(served, http)
    with pytest.raises(EmanageValidationError) as refused:
        await client.link_account(
            shop_domain="acme.myshopify.com",
            subscription_id=sub["subscriptionId"],
            link_code="LNK-ZZZZ-ZZZZ",
            idempotency_key="l-1",
        )
    linked = await client.link_account(
        shop_domain="acme.myshopify.com",
        subscription_id=sub["subscriptionId"],
        link_code=sub["linkCode"],
        idempotency_key="l-2",
    )
    assert refused.value.code == "link_code_invalid"
    assert "link code" in refused.value.message
    assert linked.kind == "dedicated"


async def test_wrong_client_credentials_are_an_auth_error(
    served: str, live: tuple[httpx.AsyncClient, ContractCheckingTransport]
) -> None:
    """invalid_client is EmanageAuthError, which is not transient."""
    http, _ = live
    client = make_client(served, http, client_secret="wrong-secret")
    with pytest.raises(EmanageAuthError) as refused:
        await client.get_account(account_id=uuid.uuid4())
    assert refused.value.code == "invalid_client"
    assert not is_transient(refused.value)


async def test_tokens_are_cached_and_renewed_before_they_expire(
    served: str, live: tuple[httpx.AsyncClient, ContractCheckingTransport]
) -> None:
    """Calls reuse one token; past expires_in minus the margin a new one is fetched first."""
    http, transport = live
    clock = FakeClock()
    client = make_client(served, http, clock)
    account = await client.create_account(
        shop_domain="demo.myshopify.com",
        name="D",
        email="d@d.example",
        currency="USD",
        idempotency_key="k-1",
    )
    await client.get_account(account_id=account.id)
    await client.get_account(account_id=account.id)
    issued = [op for op, _ in transport.seen].count("issueToken")
    clock.now += 900 - 59
    await client.get_account(account_id=account.id)
    assert issued == 1
    assert [op for op, _ in transport.seen].count("issueToken") == 2


async def test_account_data_uses_a_token_for_that_account_only(
    served: str, live: tuple[httpx.AsyncClient, ContractCheckingTransport]
) -> None:
    """Another client's account is unreachable: its token cannot be had (EmanageNotFound)."""
    http, _ = live
    theirs = make_client(served, http, client_id=OTHER_CLIENT_ID, client_secret=OTHER_CLIENT_SECRET)
    account = await theirs.create_account(
        shop_domain="t.myshopify.com",
        name="T",
        email="t@t.example",
        currency="USD",
        idempotency_key="k-1",
    )
    ours = make_client(served, http)
    with pytest.raises(EmanageNotFound):
        await ours.list_payment_providers(account_id=account.id)
    with pytest.raises(EmanageNotFound):
        await ours.get_account(account_id=account.id)


async def test_a_token_the_server_dropped_is_replaced_and_the_call_sent_again(
    served: str, live: tuple[httpx.AsyncClient, ContractCheckingTransport]
) -> None:
    """eManageCRM's clock past the cached token's expiry: its 401 invalid_token makes the
    client drop the token and send the call once more with a fresh one, which succeeds."""
    http, transport = live
    client = make_client(served, http)
    account = await client.create_account(
        shop_domain="demo.myshopify.com",
        name="D",
        email="d@d.example",
        currency="USD",
        idempotency_key="k-1",
    )
    await client.get_account(account_id=account.id)
    before = [op for op, _ in transport.seen]
    await http.post(f"{served}/_sandbox/clock", json={"advanceSeconds": 901})
    assert (await client.get_account(account_id=account.id)).id == account.id
    after = [op for op, _ in transport.seen][len(before) :]
    assert after == ["getAccount", "issueToken", "getAccount"]


async def test_a_429_is_rate_limited_with_retry_after(
    served: str, live: tuple[httpx.AsyncClient, ContractCheckingTransport]
) -> None:
    """An injected 429 with Retry-After: 3 is EmanageRateLimited(retry_after=3)."""
    http, _ = live
    client = make_client(served, http)
    await http.post(
        f"{served}/_sandbox/faults", json={"failNext": 1, "status": 429, "retryAfter": 3}
    )
    with pytest.raises(EmanageRateLimited) as limited:
        await client.get_account(account_id=uuid.uuid4())
    assert limited.value.retry_after == 3.0


async def test_an_outage_is_transient(
    served: str, live: tuple[httpx.AsyncClient, ContractCheckingTransport]
) -> None:
    """While the sandbox is down, calls raise EmanageTransientError with a retry hint."""
    http, _ = live
    client = make_client(served, http)
    await http.post(f"{served}/_sandbox/faults", json={"downForSeconds": 30})
    with pytest.raises(EmanageTransientError) as down:
        await client.get_account(account_id=uuid.uuid4())
    assert down.value.status == 503
    assert down.value.retry_after is not None
    assert down.value.retry_after > 0


async def test_an_unreachable_server_is_transient() -> None:
    """A refused connection is EmanageTransientError, not a crash."""
    async with httpx.AsyncClient(timeout=2) as http:
        client = EmanageClient(http, "http://127.0.0.1:9", CLIENT_ID, CLIENT_SECRET)
        with pytest.raises(EmanageTransientError):
            await client.get_account(account_id=uuid.uuid4())


async def test_an_account_token_on_another_account_is_forbidden_for_the_connector(
    served: str, live: tuple[httpx.AsyncClient, ContractCheckingTransport]
) -> None:
    """The connector's web-sales reads work with the CID and are refused with another's."""
    http, _ = live
    client = make_client(served, http)
    a = await client.create_account(
        shop_domain="a.myshopify.com",
        name="A",
        email="a@a.example",
        currency="USD",
        idempotency_key="k-a",
    )
    b = await client.create_account(
        shop_domain="b.myshopify.com",
        name="B",
        email="b@b.example",
        currency="USD",
        idempotency_key="k-b",
    )
    campaign = (
        await http.post(
            f"{served}/_sandbox/accounts/{a.id}/campaigns",
            json={"name": "Jet", "products": [{"name": "J", "price": 9.5}]},
        )
    ).json()
    prices = await client.get_campaign_prices(
        websales_api_url=a.websales_api_url, web_key=campaign["webKey"], cid=a.cid
    )
    settings = await client.get_campaign_settings(
        websales_api_url=a.websales_api_url, web_key=campaign["webKey"], cid=a.cid
    )
    assert str(prices.prices[0].product_prices["DiscountedPrice"].value) == "9.5"
    assert settings.campaign_name == "Jet"
    with pytest.raises(EmanageAuthError):
        await client.get_campaign_settings(
            websales_api_url=a.websales_api_url, web_key=campaign["webKey"], cid=b.cid
        )


async def test_a_suspended_account_is_forbidden(
    served: str, live: tuple[httpx.AsyncClient, ContractCheckingTransport]
) -> None:
    """With a cached account token, a suspended account's data is EmanageForbidden."""
    http, _ = live
    client = make_client(served, http)
    a = await client.create_account(
        shop_domain="a.myshopify.com",
        name="A",
        email="a@a.example",
        currency="USD",
        idempotency_key="k-a",
    )
    await client.list_users(account_id=a.id)
    await http.post(f"{served}/_sandbox/accounts/{a.id}/status", json={"status": "suspended"})
    with pytest.raises(EmanageForbidden) as forbidden:
        await client.list_users(account_id=a.id)
    assert forbidden.value.code == "account_suspended"
