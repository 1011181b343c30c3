"""The App Home's JSON routes against cross-site use: the session token only from
``Authorization: Bearer``, JSON bodies only on state-changing routes, foreign origins refused,
and every refusal a JSON 401/403/415 that changes nothing."""

from __future__ import annotations

import pytest

from tests.integration.shops.conftest import System, handle_for

STATE_CHANGING = [
    "/app/api/shop/refresh",
    "/app/api/emanage/sso",
    "/app/api/emanage/link",
    "/app/api/billing/plan",
    "/app/api/onboarding/retry",
    "/app/api/ctrwow/connect",
]


@pytest.fixture
def shop(sqlite_system: System, request: pytest.FixtureRequest) -> str:
    domain = sqlite_system.create_shop(handle_for(request), name="Blue Mugs")
    sqlite_system.install(domain)
    return domain


def _pending_plan(system: System, shop: str) -> str | None:
    billing = system.fetch(shop, "/app/api/billing")
    assert billing.status_code == 200, billing.text
    pending: str | None = billing.json()["pending_plan"]
    return pending


@pytest.mark.parametrize("path", STATE_CHANGING)
def test_an_unauthenticated_post_gets_a_json_401(sqlite_system: System, path: str) -> None:
    """No token at all: 401 with a JSON error, not the document load's 302."""
    response = sqlite_system.app.post(path, json={})
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/json"
    assert "Authorization" in response.json()["error"]


@pytest.mark.parametrize(
    ("content_type", "body"),
    [("text/plain", '{"plan": "pro"}'), ("application/x-www-form-urlencoded", "plan=pro")],
)
def test_an_id_token_in_the_query_never_authenticates_a_post(
    sqlite_system: System, shop: str, content_type: str, body: str
) -> None:
    """A cross-site form carrying a (leaked) ``?id_token=`` changes nothing."""
    token = sqlite_system.id_token(shop)
    for path in ("/app/api/billing/plan", "/app/api/onboarding/retry"):
        response = sqlite_system.app.post(
            path,
            params={"id_token": token},
            content=body,
            headers={"Content-Type": content_type, "Origin": "https://evil.example"},
        )
        assert response.status_code in (401, 403), (path, response.text)
        assert response.headers["content-type"] == "application/json"
    response = sqlite_system.app.post(
        "/app/api/billing/plan",
        params={"id_token": token},
        content=body,
        headers={"Content-Type": content_type},
    )
    assert response.status_code == 401
    assert _pending_plan(sqlite_system, shop) is None


def test_a_json_route_refuses_the_query_token_on_a_get_too(
    sqlite_system: System, shop: str
) -> None:
    response = sqlite_system.app.get(
        "/app/api/shop", params={"id_token": sqlite_system.id_token(shop)}
    )
    assert response.status_code == 401
    assert shop not in response.text


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
    ],
)
def test_a_bearer_post_from_a_foreign_origin_is_refused(
    sqlite_system: System, shop: str, headers: dict[str, str]
) -> None:
    response = sqlite_system.fetch(
        shop, "/app/api/billing/plan", "POST", json={"plan": "pro"}, headers=headers
    )
    assert response.status_code == 403, response.text
    assert "error" in response.json()
    assert _pending_plan(sqlite_system, shop) is None


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
def test_a_bearer_post_without_a_json_body_is_refused(
    sqlite_system: System, shop: str, content_type: str
) -> None:
    response = sqlite_system.fetch(
        shop,
        "/app/api/billing/plan",
        "POST",
        content='{"plan": "pro"}',
        headers={"Content-Type": content_type},
    )
    assert response.status_code == 415, response.text
    assert _pending_plan(sqlite_system, shop) is None


def test_a_same_origin_json_post_with_a_bearer_token_works(
    sqlite_system: System, shop: str
) -> None:
    """What the page sends: its own Origin, Sec-Fetch-Site same-origin, JSON, Bearer."""
    origin = sqlite_system.settings.public_url
    response = sqlite_system.fetch(
        shop,
        "/app/api/billing/plan",
        "POST",
        json={"plan": "pro"},
        headers={"Origin": origin, "Sec-Fetch-Site": "same-origin"},
    )
    assert response.status_code == 200, response.text
    assert "confirmation_url" in response.json()
    assert _pending_plan(sqlite_system, shop) == "pro"
