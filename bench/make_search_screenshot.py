"""Screenshot of the search page for the README: ``irra serve`` on an index, one search made.

    python bench/make_search_screenshot.py --index INDEX --query "..." \
        [--similar-rank 3] [--camera NAME ...] [--min-score 0.2] --out docs/img/x.png

Types the query, ticks the cameras, searches; with ``--similar-rank N`` presses "Find similar" on
result N and searches again with the query text added (a text + image query), so the query image
shows beside the search box. Needs Debian's chromium (/usr/bin/chromium) and playwright.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from browser_support import CHROMIUM, CHROMIUM_FLAGS, serving  # noqa: E402
from playwright.sync_api import Page, sync_playwright  # noqa: E402


def _wait_for_results(page: Page) -> None:
    page.wait_for_function(
        "() => /results for|No results/.test(document.querySelector('#status').innerText)"
    )
    page.wait_for_function(
        "() => [...document.querySelectorAll('#results img')]"
        ".every(img => img.complete && img.naturalWidth > 0)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", required=True)
    parser.add_argument("--query", required=True)
    parser.add_argument("--k", default="10")
    parser.add_argument("--camera", action="append", default=[], help="cameras to filter by")
    parser.add_argument("--min-score", help="minimum score to enter")
    parser.add_argument("--similar-rank", type=int, help="press Find similar on this result")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as tmp,
        serving(Path(args.index), Path(tmp) / "log") as url,
        sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1000, "height": 980})
        page.goto(url + "/")
        page.wait_for_function("document.activeElement && document.activeElement.id === 'query'")
        page.wait_for_function("document.querySelector('#camera').options.length > 0")
        page.keyboard.type(args.query)
        page.select_option("#k", args.k)
        if args.camera:
            page.select_option("#camera", args.camera)
        if args.min_score:
            page.fill("#min-score", args.min_score)
        page.click("#go")
        _wait_for_results(page)
        if args.similar_rank:
            result = page.locator("#results li").nth(args.similar_rank - 1)
            result.get_by_role("button").click()
            _wait_for_results(page)
            page.fill("#query", args.query)
            page.click("#go")
            page.wait_for_function("() => new URLSearchParams(location.search).get('q')")
            _wait_for_results(page)
        page.locator("#query").blur()
        page.screenshot(path=args.out)
        print(f"wrote {args.out} showing {page.url.removeprefix(url)}")
        browser.close()


if __name__ == "__main__":
    main()
