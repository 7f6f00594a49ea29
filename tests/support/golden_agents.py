"""The agent code that recorded ``tests/golden/*.journal`` (keep it unchanged).

Regenerate the golden journals (only when the event schema changes on purpose):

    python tests/support/golden_agents.py tests/golden
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path
from typing import Any

from wakeline import App
from wakeline.providers.mock import MockModel
from wakeline.replay import read_journal
from wakeline.testing.harness import local_runtime


def make_app(prompt: str = "Give a fact about") -> App:
    app = App(default_provider="mock", default_model="mock-1")
    app.provider("mock", MockModel())

    @app.tool
    def square(n: int) -> int:
        return n * n

    @app.agent
    async def golden(ctx: Any, topic: str) -> dict[str, Any]:
        started = ctx.now()
        facts = await asyncio.gather(*(ctx.llm(f"{prompt} {topic} #{i}") for i in range(3)))
        squares = [await ctx.tool("square", n=i) for i in range(2)]
        await ctx.sleep(0.01)
        tag = ctx.uuid()
        roll = ctx.random()
        summary = await ctx.llm(f"Summarise {[f.text for f in facts]}")
        return {
            "started": started.isoformat(),
            "facts": [f.text for f in facts],
            "squares": squares,
            "tag": str(tag),
            "roll": roll,
            "summary": summary.text,
        }

    return app


def write_journal(path: Path, raw: list[bytes]) -> None:
    with path.open("wb") as out:
        for record in raw:
            out.write(len(record).to_bytes(4, "big"))
            out.write(record)


def read_golden(path: Path) -> list[bytes]:
    data = path.read_bytes()
    out: list[bytes] = []
    at = 0
    while at < len(data):
        size = int.from_bytes(data[at : at + 4], "big")
        out.append(data[at + 4 : at + 4 + size])
        at += 4 + size
    return out


async def record(folder: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        async with local_runtime(make_app(), Path(tmp)) as rt:
            handle = await rt.client.start_run("golden", "tides", run_id="golden-run-1")
            await rt.client.result(handle.run_id)
            write_journal(
                folder / "golden-run-1.journal", await read_journal(rt.log, "golden-run-1")
            )


if __name__ == "__main__":
    asyncio.run(record(Path(sys.argv[1])))
