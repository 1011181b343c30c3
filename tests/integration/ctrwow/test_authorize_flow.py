"""The authorization-code + PKCE flow driven over HTTP as a browser and the app would: consent
page, account creation or sign-in, redirect with a code, and the code's exchange."""

from __future__ import annotations

from tests.integration.ctrwow.conftest import (
    OTHER_ID,
    OTHER_SECRET,
    REDIRECT_URI,
    RunningCtrwow,
    redirect_params,
    s256,
)


def test_full_flow_creates_the_account_and_ends_with_a_token_pair(ctrwow: RunningCtrwow) -> None:
    """Signing up on the consent page creates the account; the code becomes a token pair for it."""
    code = ctrwow.sign_up("new@demo.example", shop_domain="demo.myshopify.com")
    response = ctrwow.exchange(code)
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert body["refresh_token"].startswith("ctw_rt_")
    assert body["scope"] == "account:read templates:read"
    assert response.headers["cache-control"] == "no-store"
    me = ctrwow.me(body["access_token"]).json()
    assert me["email"] == "new@demo.example"
    assert me["name"] == "Demo Store"
    assert me["external_ref"] == "demo.myshopify.com"
    assert me["id"] == body["account_id"]
    assert ctrwow.checker.checked >= 4


def test_consent_page_prefills_sign_up_from_the_login_hint(ctrwow: RunningCtrwow) -> None:
    """Without an account for the hinted email the page offers sign-up, prefilled."""
    page = ctrwow.open_consent(login_hint="fresh@demo.example", account_name="Fresh Store")
    assert page.status_code == 200
    assert 'name="account_name" value="Fresh Store"' in page.text
    assert 'value="fresh@demo.example"' in page.text
    assert "Create account and allow" in page.text


def test_redirect_carries_state_and_issuer(ctrwow: RunningCtrwow) -> None:
    """The redirect goes to the registered URI with the client's state and the issuer (RFC 9207)."""
    page = ctrwow.open_consent(login_hint="st@demo.example", account_name="S")
    done = ctrwow.submit(page, password="correct horse", accept_terms="yes")
    assert done.headers["location"].startswith(REDIRECT_URI + "?")
    params = redirect_params(done)
    assert params["state"] == "st-123"
    assert params["iss"] == ctrwow.app.state.sandbox.config.issuer


def test_existing_account_signs_in_instead_of_signing_up(ctrwow: RunningCtrwow) -> None:
    """A hinted email with an account gets the sign-in form; the right password yields a code."""
    first = ctrwow.connected("again@demo.example")
    page = ctrwow.open_consent(login_hint="again@demo.example")
    assert "Sign in and allow" in page.text
    done = ctrwow.submit(page, email="again@demo.example", password="correct horse")
    assert done.status_code == 303
    second = ctrwow.exchange(redirect_params(done)["code"]).json()
    assert second["account_id"] == first["account_id"]
    accounts = ctrwow.control.get("/_sandbox/accounts").json()["accounts"]
    assert len(accounts) == 1


def test_wrong_password_shows_the_page_again_without_a_code(ctrwow: RunningCtrwow) -> None:
    """A wrong password re-renders the form with a message and redirects nowhere."""
    ctrwow.connected("pw@demo.example")
    page = ctrwow.open_consent(login_hint="pw@demo.example")
    again = ctrwow.submit(page, email="pw@demo.example", password="wrong password")
    assert again.status_code == 200
    assert "Wrong email or password." in again.text


def test_sign_up_with_a_taken_email_asks_to_sign_in(ctrwow: RunningCtrwow) -> None:
    """Signing up with an email that has an account does not create a second one."""
    ctrwow.connected("taken@demo.example")
    page = ctrwow.open_consent(login_hint="taken@demo.example", screen="signup")
    again = ctrwow.submit(page, password="correct horse", accept_terms="yes", account_name="X")
    assert again.status_code == 200
    assert "already exists" in again.text
    assert len(ctrwow.control.get("/_sandbox/accounts").json()["accounts"]) == 1


def test_sign_up_needs_the_terms_accepted(ctrwow: RunningCtrwow) -> None:
    """Without accepting the terms no account is created."""
    page = ctrwow.open_consent(login_hint="terms@demo.example", account_name="T")
    again = ctrwow.submit(page, password="correct horse")
    assert again.status_code == 200
    assert "Accept the terms" in again.text
    assert ctrwow.control.get("/_sandbox/accounts").json()["accounts"] == []


def test_denying_redirects_with_access_denied(ctrwow: RunningCtrwow) -> None:
    """Cancel sends the person back to the client with error=access_denied and the state."""
    page = ctrwow.open_consent(login_hint="no@demo.example")
    done = ctrwow.submit(page, decision="deny")
    assert done.status_code == 303
    assert redirect_params(done)["error"] == "access_denied"
    assert redirect_params(done)["state"] == "st-123"


def test_tampered_authorization_request_is_refused(ctrwow: RunningCtrwow) -> None:
    """Changing the signed request in the form (e.g. widening the scope) is refused."""
    page = ctrwow.open_consent(login_hint="tamper@demo.example")
    from tests.integration.ctrwow.conftest import hidden_fields

    signed = hidden_fields(page.text)["request"]
    done = ctrwow.submit(page, request=signed[:-1] + ("0" if signed[-1] != "0" else "1"))
    assert done.status_code == 400
    assert "expired" in done.text


def test_plain_pkce_method_is_refused(ctrwow: RunningCtrwow) -> None:
    """code_challenge_method=plain is redirected back as invalid_request."""
    response = ctrwow.open_consent(code_challenge_method="plain", code_challenge="x" * 43)
    assert response.status_code == 302
    params = redirect_params(response)
    assert params["error"] == "invalid_request"
    assert "S256" in params["error_description"]
    assert params["state"] == "st-123"


def test_missing_pkce_is_refused(ctrwow: RunningCtrwow) -> None:
    """An authorization request without a code challenge is refused."""
    response = ctrwow.open_consent(code_challenge=None, code_challenge_method=None)
    assert response.status_code == 302
    assert redirect_params(response)["error"] == "invalid_request"


def test_unregistered_redirect_uri_is_not_redirected_to(ctrwow: RunningCtrwow) -> None:
    """A redirect URI that is not registered exactly gets an error page, never a redirect."""
    response = ctrwow.open_consent(redirect_uri=REDIRECT_URI + "/")
    assert response.status_code == 400
    assert "location" not in response.headers


def test_unknown_client_gets_an_error_page(ctrwow: RunningCtrwow) -> None:
    """An unknown client_id is answered with a 400 page."""
    response = ctrwow.open_consent(client_id="nobody")
    assert response.status_code == 400
    assert "Unknown application" in response.text


def test_scope_outside_the_clients_scopes_is_refused(ctrwow: RunningCtrwow) -> None:
    """Asking for a scope the client may not have redirects with invalid_scope."""
    response = ctrwow.open_consent(scope="account:read partner:accounts")
    assert redirect_params(response)["error"] == "invalid_scope"


def test_wrong_code_verifier_is_refused(ctrwow: RunningCtrwow) -> None:
    """The exchange fails with invalid_grant when the verifier does not hash to the challenge."""
    code = ctrwow.sign_up()
    response = ctrwow.exchange(code, code_verifier="w" * 50)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_verifier_equal_to_the_challenge_is_refused(ctrwow: RunningCtrwow) -> None:
    """Sending the challenge itself as verifier (a plain-method downgrade) does not work."""
    code = ctrwow.sign_up()
    response = ctrwow.exchange(code, code_verifier=s256("v" * 50))
    assert response.json()["error"] == "invalid_grant"


def test_mismatched_redirect_uri_at_exchange_is_refused(ctrwow: RunningCtrwow) -> None:
    """The exchange must name exactly the redirect URI used to authorize."""
    code = ctrwow.sign_up()
    response = ctrwow.exchange(code, redirect_uri=REDIRECT_URI + "?x=1")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_code_reuse_is_refused_and_revokes_the_first_tokens(ctrwow: RunningCtrwow) -> None:
    """A second exchange of a code fails and the tokens of the first exchange stop working."""
    code = ctrwow.sign_up()
    first = ctrwow.exchange(code).json()
    again = ctrwow.exchange(code)
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"
    assert ctrwow.me(first["access_token"]).status_code == 401
    assert ctrwow.refresh(first["refresh_token"]).json()["error"] == "invalid_grant"


def test_expired_code_is_refused(ctrwow: RunningCtrwow) -> None:
    """A code older than ten minutes cannot be exchanged."""
    code = ctrwow.sign_up()
    ctrwow.advance(601)
    assert ctrwow.exchange(code).json()["error"] == "invalid_grant"


def test_code_of_another_client_is_refused(ctrwow: RunningCtrwow) -> None:
    """A code issued to one client cannot be redeemed by another."""
    code = ctrwow.sign_up()
    response = ctrwow.token(
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": "v" * 50,
        },
        auth=(OTHER_ID, OTHER_SECRET),
    )
    assert response.json()["error"] == "invalid_grant"
