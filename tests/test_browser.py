"""End to end in a real browser: the page served by ``irra serve`` finds the expected image."""

from __future__ import annotations

import pytest
from browser_support import CHROMIUM_FLAGS, ensure_chromium, serving
from retrieval_fixtures import brute_force_ranking, write_gallery, write_model

from irra.inference import TorchEncoder
from irra.retrieval import build_index

QUERY = "a man in a black jacket with a red backpack"


@pytest.fixture(scope="module")
def chromium():
    sync_api = pytest.importorskip("playwright.sync_api")
    executable = ensure_chromium()
    if executable is None:
        pytest.skip("needs Debian's chromium: apt-get install chromium (as root)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(executable), args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


def test_the_page_shows_the_brute_force_top_image_first(tmp_path, chromium):
    model = write_model(tmp_path / "model")
    paths = write_gallery(tmp_path / "imgs", 30)
    encoder = TorchEncoder.from_checkpoint(model, device="cpu")
    build_index(encoder, tmp_path / "imgs", tmp_path / "index")
    ranking = brute_force_ranking(encoder.model, tmp_path / "imgs", paths, QUERY)

    with serving(tmp_path / "index", tmp_path / "serve.log") as url:
        page = chromium.new_page()
        page.goto(url + "/")
        page.wait_for_function("document.activeElement && document.activeElement.id === 'query'")
        page.keyboard.type(QUERY)  # the search box has the focus when the page opens
        assert page.input_value("#query") == QUERY
        page.keyboard.press("Tab")
        page.keyboard.press("Home")  # k selector: first option (5)
        page.keyboard.press("Tab")
        page.keyboard.press("Enter")  # the Search button
        items = page.locator("#results li")
        try:
            items.nth(4).wait_for(timeout=30_000)
        except Exception as err:
            status = page.locator("#status").inner_text()
            raise AssertionError(f"no results; page status: {status!r}") from err
        assert items.count() == 5
        assert items.first.get_attribute("data-path") == ranking[0][0]
        assert items.first.locator(".rank").inner_text() == "#1"
        assert items.first.locator(".score").inner_text() == f"{ranking[0][1]:.3f}"
        page.wait_for_function(
            "() => [...document.querySelectorAll('#results img')]"
            ".every(img => img.complete && img.naturalWidth > 0)"
        )
        assert "5 results" in page.locator("#status").inner_text()

        page.fill("#query", "   ")
        page.keyboard.press("Enter")
        assert "Type a description" in page.locator("#status").inner_text()
        page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
        page.close()
