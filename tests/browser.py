"""Open a report in headless Chromium (Debian's, driven by Playwright), as a reader
would, and record what a test checks: console errors, network requests, drawn figures.

Also a command that regenerates README's screenshot:
    python tests/browser.py report.html docs/report.png [--width 1280] [--height 2400]
"""

from __future__ import annotations

import argparse
import shutil
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Without these Chromium reaches for Google's services at start (refused on a closed
# network, and not the page's doing).
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@dataclass
class Visit:
    console_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)  # every URL but the page's own


def chromium_available() -> bool:
    return Path(CHROMIUM).is_file()


def playwright_available() -> bool:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return False
    return True


def open_page(playwright, path: Path, width: int = 1280, height: int = 900):
    """A headless Chromium page at ``path``, recording into the Visit returned with it."""
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
    page = browser.new_page(viewport={"width": width, "height": height})
    visit = Visit()
    url = path.resolve().as_uri()
    page.on("console", lambda m: m.type == "error" and visit.console_errors.append(m.text))
    page.on("pageerror", lambda e: visit.console_errors.append(str(e)))
    page.on("request", lambda r: r.url != url and visit.requests.append(r.url))
    page.goto(url, wait_until="load")
    page.wait_for_selector("body[data-drawn=all]", state="attached")  # every figure drawn
    return browser, page, visit


def screenshot(
    report: Path,
    out: Path,
    width: int = 1280,
    height: int | None = None,
    selector: str | None = None,
) -> Path:
    """Save a PNG of ``report`` (the whole page, or ``height`` pixels of it, or one
    element)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser, page, _ = open_page(p, report, width, height or 900)
        target = page.locator(selector).first if selector else page
        options = {} if selector else {"full_page": height is None}
        target.screenshot(path=str(out), **options)
        browser.close()
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=None)
    parser.add_argument("--selector", default=None)
    a = parser.parse_args()
    print(screenshot(a.report, a.out, a.width, a.height, a.selector))
