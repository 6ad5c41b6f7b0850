"""End to end in a real browser: the page served by ``irra serve`` searches as a user does.

By text (the brute-force top image first), then "Find similar" on a result (that image first),
back to the text search with the browser's back button, an uploaded query photo, and a camera
filter (only that camera's images). Footage: a hit opens its whole frame with the box drawn.
"""

from __future__ import annotations

import re

import pytest
from browser_support import CHROMIUM_FLAGS, ensure_chromium, serving
from retrieval_fixtures import brute_force_ranking, write_gallery, write_model

from irra.data.synth.scenes import SceneParams, generate_scenes
from irra.footage import open_footage
from irra.inference import TorchEncoder
from irra.retrieval import Label, build_index
from irra.retrieval.capture import parse_time
from irra.retrieval.footage import FootageSource, build_footage_index

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


def test_a_footage_hit_opens_its_frame_with_the_box(tmp_path, chromium):
    """A footage search, a hit clicked: the whole frame with the hit's box, closed by Escape."""
    generate_scenes(tmp_path / "scenes", SceneParams(sequences=1, frames=40, height=180, seed=2))
    sequence = tmp_path / "scenes" / "SYNTH-01"
    encoder = TorchEncoder.from_checkpoint(write_model(tmp_path / "model"), device="cpu")
    source = FootageSource(sequence, camera="gate", start=parse_time("2024-05-01T14:00:00Z"))
    build_footage_index(encoder, [source], tmp_path / "index")
    width, height = open_footage(sequence).size

    with serving(tmp_path / "index", tmp_path / "serve.log") as url:
        page = chromium.new_page()
        page.goto(url + "/")
        page.fill("#query", QUERY)
        page.keyboard.press("Enter")
        _results_loaded(page, 3)
        api = page.request.post(url + "/api/search", data={"query": QUERY, "k": 10}).json()
        hits = {str(h["id"]): h for h in api["results"]}
        items = page.locator("#results li")
        assert [items.nth(i).get_attribute("data-id") for i in range(items.count())] == list(hits)
        first = hits[items.first.get_attribute("data-id")]
        assert items.first.get_attribute("data-track") == str(first["track"])
        assert f"track {first['track']}" in items.first.inner_text()
        assert (
            "gate" in items.first.inner_text() and first["time"][11:19] in items.first.inner_text()
        )

        def frame_shown(hit: dict) -> None:
            dialog = page.locator("#frame-dialog")
            assert dialog.get_attribute("open") is not None
            page.wait_for_function(
                "() => { const i = document.querySelector('#frame-image');"
                " return i.complete && i.naturalWidth > 0"
                " && !document.querySelector('#frame-box').hidden; }"
            )
            natural = page.eval_on_selector(
                "#frame-image", "i => [i.naturalWidth, i.naturalHeight]"
            )
            assert natural == [width, height]
            image = page.locator("#frame-image").bounding_box()
            box = page.locator("#frame-box").bounding_box()
            scale = image["width"] / width
            x, y, w, h = hit["box"]
            assert box["x"] - image["x"] == pytest.approx(x * scale, abs=1.0)
            assert box["y"] - image["y"] == pytest.approx(y * scale, abs=1.0)
            assert box["width"] == pytest.approx(w * scale, abs=1.0)
            assert box["height"] == pytest.approx(h * scale, abs=1.0)
            assert f"frame {hit['frame']}" in page.locator("#frame-title").inner_text()

        items.first.locator("a").click()
        frame_shown(first)
        page.screenshot(path=str(tmp_path / "frame.png"))
        page.keyboard.press("Escape")
        page.wait_for_function("() => !document.querySelector('#frame-dialog').open")
        focus_back_on = "id => document.activeElement.closest('li')?.dataset.id === id"
        page.wait_for_function(focus_back_on, arg=str(first["id"]))  # the hit has focus again

        # The keyboard way: Enter on the second hit, closed with the close button.
        second = hits[items.nth(1).get_attribute("data-id")]
        items.nth(1).locator("a").focus()
        page.keyboard.press("Enter")
        frame_shown(second)
        page.click("#frame-close")
        page.wait_for_function("() => !document.querySelector('#frame-dialog').open")
        page.wait_for_function(focus_back_on, arg=str(second["id"]))

        # A time filter on footage: only crops seen at or after that second.
        middle = "2024-05-01T14:00:01"  # the 40 frames span 14:00:00.000-14:00:01.560
        assert any(h["time"] < middle for h in hits.values())  # some hits are filtered away
        page.fill("#after", middle)
        page.keyboard.press("Enter")
        page.wait_for_function("() => new URLSearchParams(location.search).get('after')")
        _results_loaded(page)
        times = [items.nth(i).get_attribute("data-time") for i in range(items.count())]
        assert times and all(t >= middle for t in times)
        page.close()
