"""The partner path (provisioning with Idempotency-Key, 409 on a second account, a new grant
for recovery), /v1/me, the templates catalogue, and the sandbox's own routes."""

from __future__ import annotations

import time
from typing import Any

import httpx

from tests.integration.ctrwow.conftest import RunningCtrwow, running

SHOP = "demo.myshopify.com"


def provision(
    ctrwow: RunningCtrwow, key: str, body: dict[str, Any] | None = None, token: str | None = None
) -> httpx.Response:
    payload = body or {"external_ref": SHOP, "email": "owner@demo.example", "name": "Demo"}
    return ctrwow.http.post(
        "/partner/v1/accounts",
        json=payload,
        headers={
            "Authorization": f"Bearer {token or ctrwow.partner_token()}",
            "Idempotency-Key": key,
        },
    )


def test_provisioning_returns_the_account_and_a_working_pair(ctrwow: RunningCtrwow) -> None:
    """The partner gets the new account and a token pair that acts for it and refreshes."""
    response = provision(ctrwow, "k-1")
    assert response.status_code == 201
    body = response.json()
    assert body["account"]["external_ref"] == SHOP
    me = ctrwow.me(body["token"]["access_token"]).json()
    assert me["id"] == body["account"]["id"]
    assert ctrwow.refresh(body["token"]["refresh_token"]).status_code == 200


def test_replay_with_the_same_key_returns_the_original(ctrwow: RunningCtrwow) -> None:
    """Same key and body: the stored response, marked replayed, and still one account."""
    first = provision(ctrwow, "k-1")
    again = provision(ctrwow, "k-1")
    assert again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert len(ctrwow.control.get("/_sandbox/accounts").json()["accounts"]) == 1


def test_same_key_with_another_body_is_422(ctrwow: RunningCtrwow) -> None:
    """Reusing a key for a different request is refused."""
    provision(ctrwow, "k-1")
    other = provision(
        ctrwow, "k-1", {"external_ref": "x.myshopify.com", "email": "x@x.example", "name": "X"}
    )
    assert other.status_code == 422
    assert other.json()["code"] == "idempotency_key_reused"


def test_second_account_for_the_same_shop_is_409_with_its_id(ctrwow: RunningCtrwow) -> None:
    """Another key for the same external_ref names the existing account."""
    first = provision(ctrwow, "k-1").json()
    second = provision(ctrwow, "k-2")
    assert second.status_code == 409
    assert second.json()["account_id"] == first["account"]["id"]


def test_email_with_its_own_account_is_409_email_in_use(ctrwow: RunningCtrwow) -> None:
    """A merchant who already has a CTRwow account must connect it through OAuth."""
    ctrwow.connected("owner@demo.example")
    response = provision(ctrwow, "k-1")
    assert response.status_code == 409
    assert response.json()["code"] == "email_in_use"
    assert "account_id" not in response.json()


def test_missing_idempotency_key_is_400(ctrwow: RunningCtrwow) -> None:
    """Writes without an Idempotency-Key are refused before anything happens."""
    response = ctrwow.http.post(
        "/partner/v1/accounts",
        json={"external_ref": SHOP, "email": "o@d.example", "name": "D"},
        headers={"Authorization": f"Bearer {ctrwow.partner_token()}"},
    )
    assert response.status_code == 400
    assert response.json()["code"] == "idempotency_key_required"


def test_invalid_body_is_400(ctrwow: RunningCtrwow) -> None:
    """A body without the email is refused with a message naming the field."""
    response = provision(ctrwow, "k-1", {"external_ref": SHOP, "name": "Demo"})
    assert response.status_code == 400
    assert "'email'" in response.json()["detail"]


def test_an_account_token_cannot_provision(ctrwow: RunningCtrwow) -> None:
    """Provisioning needs the partner scope: an account's token gets 403 insufficient_scope."""
    account_token = ctrwow.connected()["access_token"]
    response = provision(ctrwow, "k-1", token=account_token)
    assert response.status_code == 403
    assert 'error="insufficient_scope"' in response.headers["www-authenticate"]


def test_new_grant_for_a_provisioned_account_replaces_the_old(ctrwow: RunningCtrwow) -> None:
    """A recovery grant works and revokes the partner's previous grant for the account."""
    first = provision(ctrwow, "k-1").json()
    response = ctrwow.http.post(
        f"/partner/v1/accounts/{first['account']['id']}/tokens",
        json={},
        headers={
            "Authorization": f"Bearer {ctrwow.partner_token()}",
            "Idempotency-Key": "k-tokens-1",
        },
    )
    assert response.status_code == 201
    assert ctrwow.me(response.json()["access_token"]).status_code == 200
    assert ctrwow.me(first["token"]["access_token"]).status_code == 401


def test_new_grant_for_an_account_not_provisioned_by_us_is_404(ctrwow: RunningCtrwow) -> None:
    """A partner cannot obtain tokens for an account it did not create."""
    account_id = ctrwow.connected()["account_id"]
    response = ctrwow.http.post(
        f"/partner/v1/accounts/{account_id}/tokens",
        headers={"Authorization": f"Bearer {ctrwow.partner_token()}", "Idempotency-Key": "k"},
    )
    assert response.status_code == 404


def test_me_without_a_token_is_401_without_error_code(ctrwow: RunningCtrwow) -> None:
    """No credentials: 401 with a bare Bearer challenge (RFC 6750 §3.1)."""
    response = ctrwow.http.get("/v1/me")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="ctrwow"'


def test_me_with_an_unknown_token_is_invalid_token(ctrwow: RunningCtrwow) -> None:
    """A made-up token gets 401 invalid_token."""
    response = ctrwow.me("ctw_at_made_up")
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_token"


def test_templates_are_listed_with_kinds_and_previews(ctrwow: RunningCtrwow) -> None:
    """The catalogue has every kind, and each preview URL serves a page."""
    token = ctrwow.connected()["access_token"]
    response = ctrwow.http.get("/v1/templates", headers={"Authorization": f"Bearer {token}"})
    data = response.json()["data"]
    assert {t["kind"] for t in data} == {"landing", "upsell", "thankyou"}
    preview = httpx.get(data[0]["preview_url"].replace("http://127.0.0.1:8300", ctrwow.base_url))
    assert preview.status_code == 200
    assert data[0]["name"] in preview.text


def test_templates_page_with_a_cursor_and_a_kind(ctrwow: RunningCtrwow) -> None:
    """Pages of two follow next_cursor to the end; kind filters."""
    headers = {"Authorization": f"Bearer {ctrwow.connected()['access_token']}"}
    seen: list[str] = []
    params: dict[str, str] = {"limit": "2"}
    while True:
        page = ctrwow.http.get("/v1/templates", params=params, headers=headers).json()
        seen += [t["id"] for t in page["data"]]
        if page["next_cursor"] is None:
            break
        params["cursor"] = page["next_cursor"]
    assert len(seen) == len(set(seen)) == 6
    upsells = ctrwow.http.get("/v1/templates", params={"kind": "upsell"}, headers=headers)
    assert {t["kind"] for t in upsells.json()["data"]} == {"upsell"}


def test_templates_need_the_templates_scope(ctrwow: RunningCtrwow) -> None:
    """A token granted only account:read gets 403 on the catalogue."""
    code = ctrwow.sign_up(scope="account:read")
    token = ctrwow.exchange(code).json()["access_token"]
    response = ctrwow.http.get("/v1/templates", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 403


def test_metadata_advertises_only_s256(ctrwow: RunningCtrwow) -> None:
    """RFC 8414 metadata lists the endpoints on the sandbox's URL and S256 only."""
    meta = ctrwow.http.get("/.well-known/oauth-authorization-server").json()
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert meta["token_endpoint"] == "http://127.0.0.1:8300/oauth/token"
    assert "refresh_token" in meta["grant_types_supported"]


def test_openapi_json_is_the_contract(ctrwow: RunningCtrwow) -> None:
    """/openapi.json serves the YAML contract as JSON, with this sandbox as first server."""
    document = ctrwow.http.get("/openapi.json").json()
    assert document["openapi"] == "3.1.0"
    assert "/v1/me" in document["paths"]
    assert document["servers"][0]["url"] == "http://127.0.0.1:8300"


def test_fail_next_answers_503_with_retry_after(ctrwow: RunningCtrwow) -> None:
    """After asking for two failures, two calls get 503 with Retry-After, the third succeeds."""
    ctrwow.control.post("/_sandbox/faults", json={"fail_next": 2, "retry_after": 7})
    statuses = [ctrwow.http.get("/healthz") for _ in range(3)]
    assert [r.status_code for r in statuses] == [503, 503, 200]
    assert statuses[0].headers["retry-after"] == "7"


def test_down_for_a_while_then_up(ctrwow: RunningCtrwow) -> None:
    """ "Down" for T seconds fails everything until it passes, control routes excepted."""
    ctrwow.control.post("/_sandbox/faults", json={"down_for": 30})
    assert ctrwow.http.get("/healthz").status_code == 503
    assert ctrwow.control.get("/_sandbox/accounts").status_code == 200
    ctrwow.control.delete("/_sandbox/faults")
    assert ctrwow.http.get("/healthz").status_code == 200


def test_latency_slows_every_api_answer(ctrwow: RunningCtrwow) -> None:
    """A slow CTRwow: each API answer waits the asked latency; out-of-range values are refused."""
    assert ctrwow.control.post("/_sandbox/faults", json={"latency": 61}).status_code == 400
    set_slow = ctrwow.control.post("/_sandbox/faults", json={"latency": 0.3})
    assert set_slow.json()["latency"] == 0.3
    started = time.monotonic()
    assert ctrwow.http.get("/healthz").status_code == 200
    assert time.monotonic() - started >= 0.3
    ctrwow.control.delete("/_sandbox/faults")
    assert ctrwow.control.get("/_sandbox/faults").json()["latency"] == 0


def test_live_tokens_are_listed_for_ops(ctrwow: RunningCtrwow) -> None:
    """The control route lists the live access and refresh token of a connection."""
    account_id = ctrwow.connected()["account_id"]
    found = ctrwow.control.get("/_sandbox/tokens", params={"account_id": account_id}).json()
    assert sorted(t["kind"] for t in found["tokens"]) == ["access_token", "refresh_token"]


def test_control_token_guards_the_control_routes(tmp_path: Any) -> None:
    """With a control token set, control calls without it get 403."""
    from tests.integration.ctrwow.conftest import make_config

    with running(make_config(tmp_path, control_token="ops-secret")) as sandbox:
        assert sandbox.control.get("/_sandbox/accounts").status_code == 403
        ok = sandbox.control.get("/_sandbox/accounts", headers={"X-Sandbox-Token": "ops-secret"})
        assert ok.status_code == 200
