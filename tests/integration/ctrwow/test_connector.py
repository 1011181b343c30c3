"""CtrwowClient, the app's connector, against the sandbox served over real HTTP: both ways of
connecting end with a token pair, and each failure arrives as the documented error."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from syncapp.connectors.ctrwow import (
    CtrwowClient,
    CtrwowConflict,
    CtrwowInvalidClient,
    CtrwowInvalidGrant,
    CtrwowInvalidToken,
    CtrwowPermanentError,
    CtrwowRateLimited,
    CtrwowTransientError,
    new_code_verifier,
)
from tests.integration.ctrwow.conftest import (
    APP_ID,
    APP_SECRET,
    REDIRECT_URI,
    RunningCtrwow,
    redirect_params,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def client(ctrwow: RunningCtrwow) -> AsyncIterator[CtrwowClient]:
    async with httpx.AsyncClient(
        timeout=10, event_hooks={"response": [ctrwow.checker.acheck]}
    ) as http:
        yield CtrwowClient(
            http, base_url=ctrwow.base_url, client_id=APP_ID, client_secret=APP_SECRET
        )


def consent(ctrwow: RunningCtrwow, url: str) -> str:
    """Play the merchant's browser on ``url``: sign up and allow; returns the code."""
    page = ctrwow.http.get(url)
    assert page.status_code == 200, page.text
    fields = {"password": "correct horse", "accept_terms": "yes"}
    if 'name="email" value=""' in page.text:
        fields.update(email="typed@demo.example", account_name="Typed Store")
    done = ctrwow.submit(page, **fields)
    assert done.status_code == 303, done.text
    return redirect_params(done)["code"]


async def test_oauth_flow_ends_with_a_pair_for_the_new_account(
    ctrwow: RunningCtrwow, client: CtrwowClient
) -> None:
    """authorization_url → consent → exchange_code gives a pair; me() reads the account."""
    verifier = new_code_verifier()
    url = client.authorization_url(
        REDIRECT_URI,
        "state-1",
        verifier,
        ["account:read", "templates:read"],
        login_hint="merchant@demo.example",
        account_name="Demo Store",
        shop_domain="demo.myshopify.com",
    )
    pair = await client.exchange_code(consent(ctrwow, url), REDIRECT_URI, verifier)
    assert pair.scope == frozenset({"account:read", "templates:read"})
    assert pair.expires_at - datetime.now(UTC) > timedelta(minutes=59)
    account = await client.me(pair.access_token)
    assert account.email == "merchant@demo.example"
    assert account.external_ref == "demo.myshopify.com"
    assert "ctw_" not in repr(pair)


async def test_wrong_verifier_raises_invalid_grant(
    ctrwow: RunningCtrwow, client: CtrwowClient
) -> None:
    """A code exchanged with another verifier raises CtrwowInvalidGrant."""
    url = client.authorization_url(REDIRECT_URI, "s", new_code_verifier(), ["account:read"])
    with pytest.raises(CtrwowInvalidGrant):
        await client.exchange_code(consent(ctrwow, url), REDIRECT_URI, new_code_verifier())


async def test_provision_then_refresh_then_revoke(client: CtrwowClient) -> None:
    """The partner path gives a pair; refresh rotates it; revoke ends the grant."""
    account, pair = await client.provision_account(
        "demo.myshopify.com", "owner@demo.example", "Demo", "onboard-1"
    )
    assert (await client.me(pair.access_token)).id == account.id
    rotated = await client.refresh(pair.refresh_token)
    assert rotated.refresh_token != pair.refresh_token
    await client.revoke(rotated.refresh_token, "refresh_token")
    with pytest.raises(CtrwowInvalidToken):
        await client.me(rotated.access_token)
    with pytest.raises(CtrwowInvalidGrant):
        await client.refresh(rotated.refresh_token)


async def test_provision_replay_returns_the_same_account_and_pair(client: CtrwowClient) -> None:
    """A retried provisioning with the same key returns the original result."""
    first = await client.provision_account("a.myshopify.com", "a@demo.example", "A", "key-a")
    again = await client.provision_account("a.myshopify.com", "a@demo.example", "A", "key-a")
    assert again[0] == first[0]
    assert again[1].refresh_token == first[1].refresh_token


async def test_second_provisioning_raises_conflict_then_recovers(client: CtrwowClient) -> None:
    """A new key for the same shop raises CtrwowConflict naming the account; a new grant works."""
    account, _ = await client.provision_account("b.myshopify.com", "b@demo.example", "B", "k1")
    with pytest.raises(CtrwowConflict) as caught:
        await client.provision_account("b.myshopify.com", "b@demo.example", "B", "k2")
    assert caught.value.existing_id == account.id
    pair = await client.issue_account_tokens(account.id, "recover-1")
    assert (await client.me(pair.access_token)).id == account.id


async def test_templates_are_listed_across_pages(client: CtrwowClient) -> None:
    """list_templates returns the whole catalogue, and filters by kind."""
    _, pair = await client.provision_account("c.myshopify.com", "c@demo.example", "C", "k")
    templates = await client.list_templates(pair.access_token)
    assert len(templates) == 6
    thankyou = await client.list_templates(pair.access_token, kind="thankyou")
    assert [t.kind for t in thankyou] == ["thankyou"]


async def test_outage_raises_transient_with_retry_after(
    ctrwow: RunningCtrwow, client: CtrwowClient
) -> None:
    """503 from CTRwow is CtrwowTransientError carrying Retry-After."""
    ctrwow.control.post("/_sandbox/faults", json={"fail_next": 1, "retry_after": 4})
    with pytest.raises(CtrwowTransientError) as caught:
        await client.server_metadata()
    assert caught.value.retry_after == 4.0
    assert caught.value.status == 503


async def test_429_raises_rate_limited(ctrwow: RunningCtrwow, client: CtrwowClient) -> None:
    """429 is CtrwowRateLimited, a transient error."""
    ctrwow.control.post("/_sandbox/faults", json={"fail_next": 1, "status": 429, "retry_after": 2})
    with pytest.raises(CtrwowRateLimited) as caught:
        await client.partner_token()
    assert caught.value.retry_after == 2.0


async def test_unreachable_ctrwow_is_transient() -> None:
    """No server at the base URL is a transient error, not a crash."""
    async with httpx.AsyncClient(timeout=2) as http:
        client = CtrwowClient(http, base_url="http://127.0.0.1:9", client_id="x", client_secret="y")
        with pytest.raises(CtrwowTransientError):
            await client.server_metadata()


async def test_wrong_client_secret_raises_invalid_client(ctrwow: RunningCtrwow) -> None:
    """Misconfigured credentials are CtrwowInvalidClient, not retryable."""
    async with httpx.AsyncClient(timeout=10) as http:
        client = CtrwowClient(
            http, base_url=ctrwow.base_url, client_id=APP_ID, client_secret="wrong" * 8
        )
        with pytest.raises(CtrwowInvalidClient):
            await client.partner_token()


async def test_invalid_provisioning_is_permanent(client: CtrwowClient) -> None:
    """A request CTRwow refuses as invalid is CtrwowPermanentError with its code."""
    with pytest.raises(CtrwowPermanentError) as caught:
        await client.provision_account("d.myshopify.com", "not-an-email", "D", "k")
    assert caught.value.code == "invalid_body"
