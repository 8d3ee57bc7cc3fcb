"""The documentation pages render in a real browser with the network off: Debian's chromium,
driven by Playwright, every request not to 127.0.0.1 blocked and counted."""

import asyncio
import contextlib
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.async_api import BrowserContext, Route, async_playwright

ROOT = Path(__file__).resolve().parents[2]
# Seconds the browser and Playwright's driver get to close.
CLOSE_SECONDS = 15
CHROMIUM = Path("/usr/bin/chromium")
# Set to keep the screenshot in the repository (docs/schema-page.png) instead of tmp_path.
SAVE_SCREENSHOT = "SAVE_DOCS_SCREENSHOT"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    # Belt and braces: no name resolves but the loopback, should anything slip past the route.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]
ENDPOINT_SUMMARIES = [
    "A pair's last 24 hours of prices",
    "A pair's candles over any range",
    "Pairs ranked by 24-hour volatility",
    "Database reachability and freshness of the data",
]


def chromium() -> Path:
    """Debian's chromium; a CI run fails without it (.ci/run installs it), others skip."""
    if CHROMIUM.exists() or shutil.which(str(CHROMIUM)):
        return CHROMIUM
    message = f"{CHROMIUM} is missing: apt-get install -y --no-install-recommends chromium"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
async def offline_browser(tmp_path: Path) -> AsyncIterator[tuple[BrowserContext, list[str]]]:
    """A headless chromium whose every request to anywhere but 127.0.0.1 is aborted, and the
    list of those it was asked to make."""
    executable = chromium()
    blocked: list[str] = []

    async def only_loopback(route: Route) -> None:
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            await route.continue_()
        else:
            blocked.append(route.request.url)
            await route.abort("internetdisconnected")

    playwright = await async_playwright().start()
    try:
        context = await playwright.chromium.launch_persistent_context(
            tmp_path / "profile",
            executable_path=executable,
            headless=True,
            args=FLAGS,
            viewport={"width": 1280, "height": 900},
        )
        try:
            await context.route("**/*", only_loopback)
            yield context, blocked
        finally:
            # Bounded: in two CI runs the browser's close never returned, and the run hung.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(context.close(), CLOSE_SECONDS)
    finally:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(playwright.stop(), CLOSE_SECONDS)


async def test_redoc_shows_every_endpoint_offline(
    api: httpx.AsyncClient,
    offline_browser: tuple[BrowserContext, list[str]],
    tmp_path: Path,
) -> None:
    """/schema renders Redoc from the API's own files: each endpoint is listed, and the page
    asked for nothing outside 127.0.0.1."""
    context, blocked = offline_browser
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))

    await page.goto(f"{api.base_url}/schema", wait_until="networkidle")
    await page.get_by_text(ENDPOINT_SUMMARIES[0]).first.wait_for(timeout=15_000)
    text = await page.inner_text("body")
    keep = ROOT / "docs" / "schema-page.png" if os.environ.get(SAVE_SCREENSHOT) else None
    await page.screenshot(path=keep or tmp_path / "schema-page.png")

    assert [] == blocked
    assert [] == errors
    assert [] == [summary for summary in ENDPOINT_SUMMARIES if summary not in text]
    assert "kraken" in text  # the examples: a real pair


async def test_swagger_ui_shows_every_path_offline(
    api: httpx.AsyncClient, offline_browser: tuple[BrowserContext, list[str]]
) -> None:
    """/schema/swagger renders Swagger UI from the API's own files, listing every path."""
    context, blocked = offline_browser
    page = await context.new_page()

    await page.goto(f"{api.base_url}/schema/swagger", wait_until="networkidle")
    await page.locator(".opblock").first.wait_for(timeout=15_000)
    paths = await page.locator(".opblock-summary-path").all_inner_texts()

    assert [] == blocked
    expected = {
        "/prices/{exchange}/{symbol}",
        "/prices/{exchange}/{symbol}/candles",
        "/rankings",
        "/health",
    }
    assert expected == {path.replace("\u200b", "") for path in paths}
