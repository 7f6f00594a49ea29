"""An orphaned run over HTTP and on the dashboard: a run of version 1 waits while the only
live worker hosts version 2; ``GET /v1/runs?orphaned=true`` lists it, ``GET /v1/runs/{id}``
says so with its version, and the dashboard shows an *orphaned* badge and ``agent@version``
in the runs list and on the run page."""

from __future__ import annotations

from pathlib import Path

import httpx
from playwright.async_api import async_playwright, expect
from test_dashboard_browser import CHROMIUM_ARGS, OPERATOR, OPERATOR_SECRET, ensure_chromium
from version_fleet import (
    ALL,
    VersionWorker,
    left_by_v1,
    opened,  # noqa: F401  (the fixture ``fleet``)
)

from wakeline.api import KeyRing, create_app
from wakeline.api.serve import serving
from wakeline.client import Client
from wakeline.testing.fake_llm import FakeLLMServer


async def test_an_orphaned_run_is_shown_as_such_over_http_and_on_the_dashboard(
    fleet: tuple[Path, Client, FakeLLMServer], tmp_path: Path
) -> None:
    data, client, server = fleet
    run_id = await left_by_v1(data, client, server)
    new = await VersionWorker.spawn(data, server, "v2()", "new")
    api = create_app(
        client.log,
        state_dir=tmp_path / "api",
        keys=KeyRing.from_specs([f"ops:operator:{OPERATOR_SECRET}"]),
        poll_s=0.05,
    )
    chromium = ensure_chromium()
    try:
        await new.owns(ALL)
        await new.until(lambda w: any(f"run {run_id} left untouched" in x for x in w.lines))
        async with (
            api.router.lifespan_context(api),
            serving(api) as base,
            httpx.AsyncClient(base_url=base, headers=OPERATOR) as http,
        ):
            listed = (await http.get("/v1/runs", params={"orphaned": "true"})).json()["runs"]
            assert [(r["run_id"], r["version"], r["orphaned"]) for r in listed] == [
                (run_id, "1", True)
            ]
            assert (await http.get("/v1/runs", params={"orphaned": "false"})).json()["runs"] == []
            row = (await http.get(f"/v1/runs/{run_id}")).json()
            assert row["orphaned"] is True and row["status"] == "suspended"

            async with async_playwright() as pw:
                browser = await pw.chromium.launch(
                    executable_path=str(chromium), headless=True, args=CHROMIUM_ARGS
                )
                try:
                    page = await browser.new_page()
                    await page.goto(f"{base}/")
                    await page.fill("#key-input", OPERATOR_SECRET)
                    await page.click("#key-save")
                    line = page.locator(f'tr[data-run-id="{run_id}"]')
                    await expect(line.locator(".s-orphaned")).to_have_text("orphaned")
                    await expect(line).to_contain_text("summarize@1")
                    await page.select_option("#filter-status", "orphaned")
                    await expect(page.locator("tr.run-row")).to_have_count(1)
                    await page.goto(f"{base}/#/runs/{run_id}")
                    await expect(page.locator("#run-status .s-orphaned")).to_be_visible()
                    await expect(page.locator("#run-summary")).to_contain_text("summarize@1")
                finally:
                    await browser.close()
    finally:
        await new.stop()
