"""The dashboard's run page opened before the run exists (a link shared right after a start):
it says it waits for the run and shows it once the views know it, instead of "unknown run"."""

from __future__ import annotations

from pathlib import Path

import httpx
from playwright.async_api import async_playwright, expect
from test_dashboard_browser import (
    CHROMIUM_ARGS,
    OPERATOR,
    OPERATOR_SECRET,
    ensure_chromium,
    live_dashboard,
    sign_in,
)


async def test_a_run_page_opened_before_the_run_exists_shows_it_once_it_does(
    tmp_path: Path,
) -> None:
    chromium = ensure_chromium()
    async with live_dashboard(tmp_path) as base, async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=str(chromium), headless=True, args=CHROMIUM_ARGS
        )
        try:
            page = await browser.new_page()
            await sign_in(page, base, OPERATOR_SECRET, "ops · operator")
            await page.goto(f"{base}/#/runs/early-1")
            await expect(page.locator("#banner")).to_contain_text("not known yet", timeout=15_000)

            async with httpx.AsyncClient(base_url=base) as http:
                body = {
                    "agent": "napper",
                    "input": {"naps": 1, "seconds": 0.1},
                    "run_id": "early-1",
                }
                r = await http.post("/v1/runs", json=body, headers=OPERATOR)
                assert r.status_code == 202, r.text
            await expect(page.locator("#run-status")).to_have_text("completed", timeout=30_000)
            await expect(page.locator("#run-summary")).to_contain_text("napper")
            await expect(page.locator("#banner")).to_be_hidden()
        finally:
            await browser.close()
