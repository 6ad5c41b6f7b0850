"""End to end in a real browser: the page served by ``irra serve`` searches as a user does.

By text (the brute-force top image first), then "Find similar" on a result (that image first),
back to the text search with the browser's back button, an uploaded query photo, and a camera
filter (only that camera's images).
"""

from __future__ import annotations

import re

import pytest
from browser_support import CHROMIUM_FLAGS, ensure_chromium, serving
from retrieval_fixtures import brute_force_ranking, write_gallery, write_model

from irra.inference import TorchEncoder
from irra.retrieval import Label, build_index

QUERY = "a man in a black jacket with a red backpack"
CAMERAS = ("gate", "hall", "yard")


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


def _results_loaded(page, count: int | None = None) -> None:
    """Wait until the last search has filled the grid (and every picture has loaded)."""
    page.wait_for_function(
        "() => /results for|No results/.test(document.querySelector('#status').innerText)"
    )
    if count is not None:
        page.locator("#results li").nth(count - 1).wait_for(timeout=30_000)
    page.wait_for_function(
        "() => [...document.querySelectorAll('#results img')]"
        ".every(img => img.complete && img.naturalWidth > 0)"
    )


def test_the_page_searches_by_text_similar_photo_and_camera(tmp_path, chromium):
    model = write_model(tmp_path / "model")
    paths = write_gallery(tmp_path / "imgs", 30)
    cameras = {p: CAMERAS[i % 3] for i, p in enumerate(paths)}
    encoder = TorchEncoder.from_checkpoint(model, device="cpu")
    labels = {p: Label(camera=cameras[p]) for p in paths}
    build_index(encoder, tmp_path / "imgs", tmp_path / "index", labels=labels)
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
        _results_loaded(page, 5)
        assert items.count() == 5
        assert items.first.get_attribute("data-path") == ranking[0][0]
        assert items.first.locator(".rank").inner_text() == "#1"
        assert items.first.locator(".score").inner_text() == f"{ranking[0][1]:.3f}"
        assert "5 results" in page.locator("#status").inner_text()
        text_url = page.url
        assert "q=a+man+in+a+black+jacket" in text_url and "k=5" in text_url

        # "Find similar" on the third result: a real button, reached with Tab, pressed with Enter.
        third = items.nth(2)
        wanted = third.get_attribute("data-path")
        third.get_by_role("button", name=re.compile("find images similar")).focus()
        page.keyboard.press("Enter")
        page.wait_for_function(
            f"() => document.querySelector('#results li')?.dataset.path === {wanted!r}"
        )
        assert "similar=" in page.url and "q=" not in page.url
        assert page.locator("#query-image").is_visible()

        # The back button returns to the text search, its box and its results.
        page.go_back()
        page.wait_for_function(
            f"() => document.querySelector('#results li')?.dataset.path === {ranking[0][0]!r}"
        )
        assert page.url == text_url and page.input_value("#query") == QUERY
        assert not page.locator("#query-image").is_visible()

        # An uploaded photo (a gallery file) finds that image first; the link says it had one.
        photo = paths[7]
        page.fill("#query", "")
        page.set_input_files("#photo-input", str(tmp_path / "imgs" / photo))
        assert page.locator("#query-image").is_visible()
        page.keyboard.press("Enter")
        page.wait_for_function(
            f"() => document.querySelector('#results li')?.dataset.path === {photo!r}"
        )
        assert "photo=upload" in page.url

        # A camera filter: only that camera's images, k of them while k pass.
        page.click("#remove-image")
        page.fill("#query", QUERY)
        page.select_option("#camera", "hall")
        page.keyboard.press("Enter")
        page.wait_for_function("() => new URLSearchParams(location.search).get('camera')")
        _results_loaded(page, 5)
        shown = [items.nth(i).get_attribute("data-camera") for i in range(items.count())]
        assert shown == ["hall"] * 5
        expected = [p for p, _ in ranking if cameras[p] == "hall"][:5]
        assert [items.nth(i).get_attribute("data-path") for i in range(5)] == expected

        # Back again: the upload search, its photo kept in memory (a link cannot hold it).
        page.go_back()
        page.wait_for_function(
            f"() => document.querySelector('#results li')?.dataset.path === {photo!r}"
        )
        assert page.locator("#query-image").is_visible() and "photo=upload" in page.url

        page.fill("#query", "   ")
        page.click("#remove-image")
        page.select_option("#camera", [])
        page.keyboard.press("Enter")
        assert "Type a description" in page.locator("#status").inner_text()
        page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
        page.close()
