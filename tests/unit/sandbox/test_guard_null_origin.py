"""``Origin: null`` (a same-origin form post from a no-referrer page, or a sandboxed frame)
claims no origin: Sec-Fetch-Site decides, and control routes still refuse simple bodies."""

from __future__ import annotations

from starlette.datastructures import Headers

from syncapp.sandbox.guard import cross_site_refusal

URL = "http://127.0.0.1:8200"


def refusal(control: bool, **headers: str) -> object:
    sent = Headers(
        {"host": "127.0.0.1:8200", **{k.replace("_", "-"): v for k, v in headers.items()}}
    )
    return cross_site_refusal("POST", sent, public_url=URL, control=control)


def test_a_same_origin_form_post_with_a_null_origin_passes() -> None:
    assert refusal(False, origin="null", sec_fetch_site="same-origin") is None


def test_a_null_origin_from_another_site_is_refused() -> None:
    assert refusal(False, origin="null", sec_fetch_site="cross-site") is not None


def test_a_simple_body_with_only_a_null_origin_is_refused_on_control_routes() -> None:
    form = "application/x-www-form-urlencoded"
    assert refusal(True, origin="null", content_type=form) is not None
