"""The dashboard in a real browser: Playwright drives Debian's Chromium against a live server
(uvicorn, the API, a real worker on the embedded log).

Chromium comes from apt, not from ``playwright install`` (which downloads browsers): when
``/usr/bin/chromium`` is missing the test installs it with apt-get if it runs as root, and
fails with instructions otherwise.  It is never skipped.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Page, async_playwright, expect
from pydantic import BaseModel
from slow_stream import SlowStream

from wakeline import App
from wakeline.api import KeyRing, create_app
from wakeline.api.serve import serving
from wakeline.providers.mock import MockModel
from wakeline.testing.harness import local_runtime

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOT = Path("/tmp/dashboard.png")
OPERATOR_SECRET = "operator-secret-browser-0123456789abcdef"
OPERATOR = {"Authorization": f"Bearer {OPERATOR_SECRET}"}
APPROVER_SECRET = "approver-secret-browser-0123456789abcdef"


def ensure_chromium() -> Path:
    """``/usr/bin/chromium``, installed with apt-get when missing (as root); else a failure
    that says how to install it."""
    if CHROMIUM.exists():
        return CHROMIUM
    how = "install Debian's Chromium: `sudo apt-get update && sudo apt-get install -y chromium`"
    if shutil.which("apt-get") is None:
        pytest.fail(f"{CHROMIUM} is missing and apt-get is not available; {how}")
    if os.geteuid() != 0:
        pytest.fail(f"{CHROMIUM} is missing and the tests do not run as root; {how}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", "chromium"]):
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            pytest.fail(f"`{' '.join(command)}` failed ({done.returncode}): {done.stderr[-2000:]}")
    if not CHROMIUM.exists():
        pytest.fail(f"apt-get installed chromium but {CHROMIUM} is still missing; {how}")
    return CHROMIUM


class Nap(BaseModel):
    naps: int = 3
    seconds: float = 1.0


async def sign_in(page: Page, base: str, secret: str, who: str) -> None:
    """Open the dashboard in ``page`` and enter the API key ``secret``; ``who`` is the name and
    role the page then shows."""
    await page.goto(f"{base}/")
    await page.fill("#key-input", secret)
    await page.click("#key-save")
    await expect(page.locator("#who")).to_have_text(who)


def make_app() -> App:
    app = App(default_provider="mock", default_model="mock-1")
    app.provider("mock", MockModel())
    app.provider("slow", SlowStream(0.15))  # streams a word every 0.15 s

    @app.tool
    def lookup(term: str) -> dict[str, str]:
        return {"term": term, "entry": f"{term}: an entry"}

    @app.agent
    async def payer(ctx: Any, amount: int) -> dict[str, Any]:
        decision = await ctx.approval("pay", {"amount": amount, "to": "otter supplies"})
        receipt = await ctx.llm(
            f"receipt for {amount}", provider="slow", model="slow-1", stream=True
        )
        return {"approved": decision.approved, "by": decision.by, "receipt": receipt.text}

    @app.agent
    async def napper(ctx: Any, nap: Nap) -> dict[str, Any]:
        notes = []
        for i in range(nap.naps):
            notes.append((await ctx.llm(f"note {i} about sea otters")).text)
            await ctx.sleep(nap.seconds)
        return {"notes": notes, "found": await ctx.tool(lookup, term="otters")}

    return app


@asynccontextmanager
async def live_dashboard(data: Path) -> AsyncIterator[str]:
    app = make_app()
    async with local_runtime(app, data / "log") as rt:
        api = create_app(
            rt.log,
            state_dir=data / "api",
            keys=KeyRing.from_specs(
                [f"ops:operator:{OPERATOR_SECRET}", f"boss:approver:{APPROVER_SECRET}"]
            ),
            app=app,
            poll_s=0.05,
        )
        async with api.router.lifespan_context(api), serving(api) as base:
            yield base


async def test_dashboard_shows_runs_live_and_their_timelines(tmp_path: Path) -> None:
    chromium = ensure_chromium()
    async with live_dashboard(tmp_path) as base, async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=str(chromium), headless=True, args=CHROMIUM_ARGS
        )
        try:
            page = await browser.new_page(viewport={"width": 1360, "height": 1000})
            problems: list[str] = []
            page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
            page.on(
                "console",
                lambda msg: problems.append(msg.text) if msg.type == "error" else None,
            )
            await page.goto(f"{base}/")
            await expect(page.locator("#banner")).to_contain_text("Enter an API key")

            # the key: typed once, kept in localStorage
            await page.fill("#key-input", OPERATOR_SECRET)
            await page.click("#key-save")
            await expect(page.locator("#who")).to_have_text("ops · operator")
            stored = await page.evaluate("localStorage.getItem('wakeline.apiKey')")
            assert stored == OPERATOR_SECRET
            await page.evaluate("window.__sameDocument = true")

            # start a run from the page; its row turns completed without a reload
            await page.click("#new-run summary")
            await page.select_option("#start-agent", "napper")
            await page.fill("#start-input", '{"naps": 3, "seconds": 1.5}')
            await page.fill("#start-tenant", "acme")
            await page.click("#start-run")
            run_id = await page.locator("#started-link").inner_text()
            status = page.locator(f'tr[data-run-id="{run_id}"] .status-cell')
            await expect(status).to_have_text(re.compile("running|waiting"), timeout=15_000)
            await expect(status).to_have_text("completed", timeout=30_000)
            assert await page.evaluate("window.__sameDocument") is True
            await page.screenshot(path="/tmp/dashboard-runs.png", full_page=True)

            # a second run, opened while it runs: the timeline follows it over SSE
            await watch_a_run_live(page, base)
            await page.screenshot(path=str(SCREENSHOT), full_page=True)
            assert await page.evaluate("window.__sameDocument") is True

            # costs
            await page.click('[data-nav="costs"]')
            await expect(page.locator("#costs-model")).to_contain_text("mock/mock-1")
            await expect(page.locator("#costs-agent")).to_contain_text("napper")
            day = page.locator("#costs-day tbody tr").first
            await expect(day).to_contain_text(re.compile(r"\d{4}-\d{2}-\d{2}"))
            acme = page.locator('#budgets tr[data-budget="tenant:acme"]')
            await expect(acme).to_contain_text("none")  # no limit: its spend is still tracked
            await expect(acme.locator("td").nth(2)).not_to_have_text("$0")
            await page.screenshot(path="/tmp/dashboard-costs.png", full_page=True)
            assert problems == []
        finally:
            await browser.close()


async def watch_a_run_live(page: Page, base: str) -> None:
    async with httpx.AsyncClient(base_url=base) as http:
        r = await http.post(
            "/v1/runs",
            json={"agent": "napper", "input": {"naps": 4, "seconds": 1.0}},
            headers=OPERATOR,
        )
        assert r.status_code == 202, r.text
        run_id = r.json()["run_id"]
    await page.click('[data-nav="runs"]')
    link = page.locator(f'tr[data-run-id="{run_id}"] a')
    await link.click(timeout=15_000)
    await expect(page.locator("#run-title")).to_have_text(run_id)
    await expect(page.locator("#run-live")).to_be_visible()
    await expect(page.locator("#run-status")).to_have_text(re.compile("running|waiting"))
    await expect(page.locator("#run-status")).to_have_text("completed", timeout=30_000)
    await expect(page.locator("#run-live")).to_be_hidden()
    # 4 model calls, 4 timers and a tool call
    await expect(page.locator("#steps-body tr.step")).to_have_count(9)
    count = int(await page.locator("#events-count").inner_text())
    assert count >= 20  # events arrived over the stream
    await expect(page.locator("#run-summary")).to_contain_text("Cost")
    # payloads on demand
    await page.locator('tr.step[data-kind="model"] .payload-toggle').first.click()
    await expect(page.locator("tr.payload")).to_contain_text("note 0 about sea otters")
    await page.locator('tr.step[data-kind="tool"] .payload-toggle').click()
    await expect(page.locator("tr.payload").nth(1)).to_contain_text("an entry")
    await page.locator("#events-card summary").click()


async def test_an_approver_decides_a_gate_and_watches_the_reply_stream(tmp_path: Path) -> None:
    chromium = ensure_chromium()
    async with live_dashboard(tmp_path) as base, async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=str(chromium), headless=True, args=CHROMIUM_ARGS
        )
        try:
            page = await browser.new_page(viewport={"width": 1360, "height": 1000})
            problems: list[str] = []
            page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
            page.on(
                "console",
                lambda msg: problems.append(msg.text) if msg.type == "error" else None,
            )
            await sign_in(page, base, APPROVER_SECRET, "boss · approver")
            async with httpx.AsyncClient(base_url=base) as http:
                r = await http.post(
                    "/v1/runs", json={"agent": "payer", "input": 40}, headers=OPERATOR
                )
                assert r.status_code == 202, r.text
                run_id = r.json()["run_id"]

            # the run waits for a person: suspended in the list, its gate on its page
            row = page.locator(f'tr[data-run-id="{run_id}"]')
            await expect(row.locator(".status-cell")).to_have_text("suspended", timeout=15_000)
            await row.locator("a").click()
            await expect(page.locator("#run-status")).to_have_text("suspended")
            gates = page.locator("#run-gates")
            await expect(gates).to_be_visible()
            gate = gates.locator('.gate[data-gate="pay"]')
            await expect(gate).to_contain_text("approval pay")
            await expect(gate).to_contain_text("otter supplies")
            await gate.locator(".gate-reason").fill("supplier is known")
            await page.screenshot(path="/tmp/dashboard-gate.png", full_page=True)

            # approve: the gate goes, the reply streams in live, the run completes
            await gate.locator(".gate-approve").click()
            stream = page.locator("#run-streams .stream-text")
            await expect(stream).to_contain_text("w1-receipt for 40", timeout=15_000)
            await expect(page.locator("#run-status")).to_have_text("running")
            assert "w7-" not in await stream.inner_text()  # not all of it yet: it is live
            await expect(gates).to_be_hidden()
            await page.screenshot(path="/tmp/dashboard-streaming.png", full_page=True)
            await expect(page.locator("#run-status")).to_have_text("completed", timeout=30_000)
            await expect(page.locator("#run-streams")).to_be_hidden()
            await expect(page.locator('tr.step[data-kind="gate"]')).to_contain_text("approved")
            await page.locator("#view-run details.card summary").first.click()
            await expect(page.locator("#run-output")).to_contain_text('"by": "boss"')
            await expect(page.locator("#run-output")).to_contain_text("w7-receipt for 40")
            await page.screenshot(path="/tmp/dashboard-approved.png", full_page=True)
            assert problems == []
        finally:
            await browser.close()
