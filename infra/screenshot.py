"""A PNG of the dashboard, taken with Debian's headless Chromium driven by Playwright.

Playwright's own browser download is never used (`playwright install` is not needed): the system
Chromium at `/usr/bin/chromium` is launched with flags that keep it off the network.
"""

from __future__ import annotations

import os
from pathlib import Path

CHROMIUM = os.environ.get("TIDINGS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
VIEWPORT = {"width": 1280, "height": 900}


class ScreenshotError(RuntimeError):
    """The browser could not start or the dashboard did not render; the message says which."""


def launch_chromium(playwright):  # type: ignore[no-untyped-def]
    """The system Chromium, headless, through a Playwright sync handle."""
    if not Path(CHROMIUM).exists():
        raise ScreenshotError(f"no Chromium at {CHROMIUM}: install Debian's chromium (make install does) or set TIDINGS_CHROMIUM")
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)


def capture_dashboard(url: str, path: Path, timeout_seconds: float = 30.0) -> Path:
    """Open `url`, wait until every panel has drawn once, and write a full-page PNG to `path`."""
    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        raise ScreenshotError("playwright is not installed: pip install playwright (no browser download needed)") from exc
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with sync_playwright() as playwright:
            browser = launch_chromium(playwright)
            try:
                page = browser.new_page(viewport=VIEWPORT, device_scale_factor=1)
                page.goto(url, timeout=timeout_seconds * 1000)
                page.wait_for_selector("body[data-refreshes]", timeout=timeout_seconds * 1000)
                page.screenshot(path=str(path), full_page=True)
            finally:
                browser.close()
    except PlaywrightError as exc:
        raise ScreenshotError(f"could not capture {url}: {exc}") from exc
    return path
