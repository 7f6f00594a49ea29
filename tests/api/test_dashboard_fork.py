"""The dashboard's Fork button: on a step of a finished run, an operator forks the run from
that step and lands on the new run's page, which completes (headless Chromium)."""

from __future__ import annotations

import re
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


async def test_a_step_is_forked_from_the_run_page(tmp_path: Path) -> None:
    chromium = ensure_chromium()
    async with live_dashboard(tmp_path) as base, async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=str(chromium), headless=True, args=CHROMIUM_ARGS
        )
        try:
            async with httpx.AsyncClient(base_url=base) as http:
                body = {"agent": "napper", "input": {"naps": 2, "seconds": 0}, "run_id": "src-1"}
                r = await http.post("/v1/runs", json=body, headers=OPERATOR)
                assert r.status_code == 202, r.text
            page = await browser.new_page(viewport={"width": 1360, "height": 1000})
            await sign_in(page, base, OPERATOR_SECRET, "ops · operator")
            await page.goto(f"{base}/#/runs/src-1")
            await expect(page.locator("#run-status")).to_have_text("completed", timeout=30_000)
            models = page.locator('tr.step[data-kind="model"]')
            await expect(models).to_have_count(2)
            second = await models.nth(1).get_attribute("data-seq")
            await models.nth(1).locator(".step-fork").click()
            await expect(page).to_have_url(re.compile(r"#/runs/(?!src-1)[0-9a-f]{32}$"))
            await expect(page.locator("#run-status")).to_have_text("completed", timeout=30_000)
            fork = page.url.rsplit("/", 1)[-1]
            async with httpx.AsyncClient(base_url=base) as http:
                source_steps = await http.get("/v1/runs/src-1/steps", headers=OPERATOR)
                fork_steps = await http.get(f"/v1/runs/{fork}/steps", headers=OPERATOR)
            before = [s for s in source_steps.json()["steps"] if s["seq"] < int(str(second))]
            after = fork_steps.json()["steps"]
            # the steps before the fork point are the source's, reused as recorded
            assert [(s["seq"], s["response"]) for s in after[: len(before)]] == [
                (s["seq"], s["response"]) for s in before
            ]
            assert len(after) == len(source_steps.json()["steps"])  # the rest ran again
        finally:
            await browser.close()
