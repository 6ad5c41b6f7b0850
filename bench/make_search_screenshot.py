"""Screenshot of the search page for the README: ``irra serve`` on an index, one query typed.

    python bench/make_search_screenshot.py --index INDEX --query "..." --out docs/img/x.png

Needs Debian's chromium (/usr/bin/chromium) and the playwright package.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from browser_support import CHROMIUM, CHROMIUM_FLAGS, serving  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", required=True)
    parser.add_argument("--query", required=True)
    parser.add_argument("--k", default="10")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as tmp,
        serving(Path(args.index), Path(tmp) / "log") as url,
        sync_playwright() as playwright,
    ):
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1000, "height": 900})
        page.goto(url + "/")
        page.wait_for_function("document.activeElement && document.activeElement.id === 'query'")
        page.keyboard.type(args.query)
        page.select_option("#k", args.k)
        page.keyboard.press("Enter")
        page.locator("#results li").nth(int(args.k) - 1).wait_for()
        page.wait_for_function(
            "() => [...document.querySelectorAll('#results img')]"
            ".every(img => img.complete && img.naturalWidth > 0)"
        )
        page.screenshot(path=args.out)
        browser.close()
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
