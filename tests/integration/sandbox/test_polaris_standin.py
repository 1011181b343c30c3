"""Every Polaris web component the app's pages use is defined by the sandbox's Polaris
stand-in and takes up space in headless Chromium (an undefined ``s-*`` tag is an empty inline
element of 0 px: a form field the merchant cannot fill in)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import playwright.sync_api as pw
import pytest

import syncapp.web

CHROMIUM = Path("/usr/bin/chromium")  # a missing browser fails the test
POLARIS = Path(__file__).resolve().parents[3] / "src/syncapp/sandbox/shopify/static/polaris.js"
TEMPLATES = Path(syncapp.web.__file__).parent / "templates"
_TAG = re.compile(r"<(s-[a-z][a-z-]*)[\s>]")


def app_tags() -> list[str]:
    """The ``s-*`` tags in the app's templates (HTML and the scripts inside them)."""
    found: set[str] = set()
    for template in TEMPLATES.rglob("*.html"):
        found.update(_TAG.findall(template.read_text()))
    return sorted(found)


@pytest.fixture(scope="module")
def page() -> Iterator[pw.Page]:
    with pw.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield browser.new_page(viewport={"width": 420, "height": 800})
        browser.close()


def test_the_app_uses_polaris_components() -> None:
    tags = app_tags()
    assert {"s-page", "s-section", "s-button", "s-text-field"} <= set(tags), tags


@pytest.mark.parametrize("tag", app_tags())
def test_each_component_the_app_uses_is_defined_and_visible(page: pw.Page, tag: str) -> None:
    page.set_content(
        f'<s-page heading="Test"><s-section heading="Part"><{tag} id="it" label="Label"'
        f' heading="Heading">Content</{tag}></s-section></s-page>'
    )
    page.add_script_tag(path=str(POLARIS))
    assert page.evaluate(f"customElements.get({tag!r}) !== undefined"), f"{tag} is not defined"
    box = page.locator("#it").bounding_box()
    assert box is not None, f"{tag} is not rendered"
    assert box["width"] > 0, f"{tag}: {box}"
    assert box["height"] > 0, f"{tag}: {box}"


def test_a_text_field_can_be_filled_in_by_its_label(page: pw.Page) -> None:
    page.set_content(
        '<form id="f"><s-text-field id="code" name="code" label="Link code"'
        ' details="From eManageCRM"></s-text-field></form>'
    )
    page.add_script_tag(path=str(POLARIS))
    page.get_by_label("Link code").fill("LNK-ABCD-EFGH")
    assert page.evaluate("document.getElementById('code').value") == "LNK-ABCD-EFGH"
    # Form-associated, as Polaris's field is: the value posts with its form.
    assert page.evaluate("new FormData(document.getElementById('f')).get('code')") == (
        "LNK-ABCD-EFGH"
    )
    page.evaluate("document.getElementById('code').setAttribute('error', 'Not valid')")
    pw.expect(page.get_by_role("alert")).to_have_text("Not valid")
    assert page.locator("#code").bounding_box()["width"] > 300  # type: ignore[index]
