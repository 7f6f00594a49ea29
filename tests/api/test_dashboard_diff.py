"""The dashboard's fork options and its side-by-side diff (headless Chromium): an operator forks
a run at its second model call with a new system prompt, the fork's page links to the diff with
its source, and the diff highlights the fork point and shows both outputs; hostile text stays
text.  The fake provider's log shows that the fork sent nothing for the step before."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from playwright.async_api import Page, async_playwright, expect
from test_dashboard_browser import (
    CHROMIUM_ARGS,
    OPERATOR,
    OPERATOR_SECRET,
    ensure_chromium,
    sign_in,
)

from wakeline import App, Context
from wakeline.api import KeyRing, create_app
from wakeline.api.serve import serving
from wakeline.providers.openai_compat import OpenAICompatProvider
from wakeline.testing.fake_llm import FakeLLMServer
from wakeline.testing.harness import local_runtime

HOSTILE_PROMPT = '<img src=x onerror="window.__pwned=1">Speak like a pirate.'
HOSTILE_TOPIC = "<script>window.__pwned=2</script>kelp"


def make_app(base_url: str) -> App:
    app = App(default_provider="openai", default_model="gpt-4o-mini")
    app.provider("openai", OpenAICompatProvider(base_url=base_url, api_key="test-key"))

    @app.agent
    async def essayist(ctx: Context, topic: str) -> list[str]:
        answers: list[str] = []
        for step in ("outline", "draft", "polish"):
            messages: list[dict[str, Any]] = [
                {"role": "system", "content": "You are a careful essayist."},
                {"role": "user", "content": f"{step} an essay on {topic}"},
            ]
            answers.append((await ctx.llm(messages, max_tokens=32)).text)
        return answers

    return app


@asynccontextmanager
async def dashboard(data: Path, server: FakeLLMServer) -> AsyncIterator[str]:
    app = make_app(server.openai_base_url)
    async with local_runtime(app, data / "log") as rt:
        keys = KeyRing.from_specs([f"ops:operator:{OPERATOR_SECRET}"])
        api = create_app(rt.log, state_dir=data / "api", keys=keys, app=app, poll_s=0.05)
        async with api.router.lifespan_context(api), serving(api) as base:
            yield base


async def fork_from_the_page(page: Page, base: str) -> tuple[int, str]:
    """Fork src-1 at its second model call with the hostile prompt; the seq and the fork."""
    await page.goto(f"{base}/#/runs/src-1")
    await expect(page.locator("#run-status")).to_have_text("completed", timeout=30_000)
    await expect(page.locator("#run-origin")).to_be_hidden()  # not a fork
    await page.click("#fork-options summary")
    await page.fill("#fork-prompt", HOSTILE_PROMPT)
    models = page.locator('tr.step[data-kind="model"]')
    await expect(models).to_have_count(3)
    second = int(str(await models.nth(1).get_attribute("data-seq")))
    await models.nth(1).locator(".step-fork").click()
    await expect(page).to_have_url(re.compile(r"#/runs/(?!src-1)[0-9a-f]{32}$"))
    await expect(page.locator("#run-status")).to_have_text("completed", timeout=30_000)
    return second, page.url.rsplit("/", 1)[-1]


async def test_a_fork_with_a_new_prompt_is_compared_with_its_source(tmp_path: Path) -> None:
    chromium = ensure_chromium()
    with FakeLLMServer() as server:
        async with dashboard(tmp_path, server) as base, async_playwright() as pw:
            browser = await pw.chromium.launch(
                executable_path=str(chromium), headless=True, args=CHROMIUM_ARGS
            )
            try:
                async with httpx.AsyncClient(base_url=base) as http:
                    body = {"agent": "essayist", "input": HOSTILE_TOPIC, "run_id": "src-1"}
                    r = await http.post("/v1/runs", json=body, headers=OPERATOR)
                    assert r.status_code == 202, r.text
                page = await browser.new_page(viewport={"width": 1360, "height": 1000})
                problems: list[str] = []
                page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
                await sign_in(page, base, OPERATOR_SECRET, "ops · operator")
                await page.goto(f"{base}/#/runs/src-1")
                await expect(page.locator("#run-status")).to_have_text("completed", timeout=30_000)
                before = server.received
                second, fork = await fork_from_the_page(page, base)
                sent = server.requests()[before:]
                async with httpx.AsyncClient(base_url=base) as http:
                    outputs = {
                        run: (await http.get(f"/v1/runs/{run}", headers=OPERATOR)).json()["output"]
                        for run in ("src-1", fork)
                    }

                # the fork's page says where it comes from and links to the diff
                origin = page.locator("#run-origin")
                await expect(origin).to_contain_text(f"forked from src-1 at seq {second}")
                await page.click("#run-compare")
                await expect(page).to_have_url(re.compile(rf"#/diff/src-1/{fork}$"))
                await check_the_diff(page, second, outputs["src-1"], outputs[fork])

                # the same view from the runs list's compare form
                await page.goto(f"{base}/#/runs")
                await page.click("#compare summary")
                await page.fill("#compare-a", "src-1")
                await page.fill("#compare-b", fork)
                await page.click("#compare-run")
                await expect(page).to_have_url(re.compile(rf"#/diff/src-1/{fork}$"))
                await expect(page.locator("tr.first-divergence")).to_have_count(1)
                assert await page.evaluate("window.__pwned") is None
                assert problems == []
            finally:
                await browser.close()
    # the fork sent the two calls from its fork point on, nothing for the step before
    assert len(sent) == 2
    assert all(r.body["messages"][0]["content"] == HOSTILE_PROMPT for r in sent)


async def check_the_diff(page: Page, second: int, source_out: str, fork_out: str) -> None:
    source_answers, fork_answers = json.loads(source_out), json.loads(fork_out)
    assert source_answers[0] == fork_answers[0] and source_answers[1] != fork_answers[1]
    await expect(page.locator("#diff-first")).to_contain_text(
        f"First divergence: step 2 (A seq {second}, B seq {second})"
    )
    pairs = page.locator("#diff-body tr.diff-pair")
    await expect(pairs).to_have_count(3)
    first = page.locator("#diff-body tr.first-divergence")
    await expect(first).to_have_count(1)
    assert await first.get_attribute("data-a-seq") == str(second)
    assert await first.get_attribute("data-b-seq") == str(second)
    await expect(first.locator(".diff-flag")).to_have_text("first divergence")
    # the reused step is the same on both sides, and not marked
    await expect(pairs.nth(0)).not_to_have_class(re.compile("first-divergence|diverged|differs"))
    await expect(pairs.nth(0).locator(".changed")).to_have_count(0)
    # at the fork point: the system prompts and outputs differ, marked, shown as text
    a, b = first.locator(".side-a"), first.locator(".side-b")
    await expect(b.locator(".f-system pre")).to_have_text(HOSTILE_PROMPT)
    await expect(a.locator(".f-system pre")).to_have_text("You are a careful essayist.")
    await expect(b.locator(".f-system")).to_have_class(re.compile("changed"))
    await expect(a.locator(".f-output pre")).to_have_text(source_answers[1])
    await expect(b.locator(".f-output pre")).to_have_text(fork_answers[1])
    await expect(b.locator(".f-output")).to_have_class(re.compile("changed"))
    await expect(b.locator(".f-prompt pre")).to_have_text(f"draft an essay on {HOSTILE_TOPIC}")
    await expect(b.locator(".f-prompt")).not_to_have_class(re.compile("changed"))
    await expect(page.locator("#diff-body img, #diff-body script")).to_have_count(0)
    await page.screenshot(path="/tmp/dashboard-diff.png", full_page=True)
