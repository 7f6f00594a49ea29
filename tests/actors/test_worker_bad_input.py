"""Bad input never stops a worker: each gets a clear error and other runs go on."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from wakeline import App, Client, RunError
from wakeline.providers.mock import MockModel
from wakeline.schemas.codec import command_codec, notice_codec
from wakeline.schemas.commands import Command, CommandRejected, StartRun
from wakeline.schemas.events import TimerScheduled
from wakeline.testing import local_runtime, wait_for_event
from wakeline.topics.port import Log, OutRecord, RecordTooLargeError
from wakeline.topics.specs import DEFAULT_TOPICS


class Order(BaseModel):
    item: str
    quantity: int


def make_app() -> App:
    app = App()
    app.provider("mock", MockModel())

    @app.agent
    async def shop(ctx: Any, order: Order) -> str:
        reply = await ctx.llm(f"buy {order.quantity} {order.item}")
        return str(reply.text)

    @app.agent
    async def napper(ctx: Any, seconds: float) -> str:
        await ctx.sleep(seconds)
        return "rested"

    return app


async def dead_letters(log: Log) -> list[dict[str, str]]:
    records = await log.read(DEFAULT_TOPICS.deadletter, 0, 0)
    return [{k: v.decode() for k, v in r.headers} for r in records]


async def test_each_kind_of_bad_input_is_reported_and_the_worker_keeps_going(
    tmp_path: Path,
) -> None:
    async with local_runtime(make_app(), tmp_path) as rt:
        client = rt.client
        good = await client.start_run("shop", {"item": "tea", "quantity": 2})

        unknown = await client.start_run("no-such-agent", {})
        with pytest.raises(RunError, match=r"UnknownAgent.*no-such-agent.*known: napper, shop"):
            await client.result(unknown.run_id, from_offset=unknown.from_offset)

        invalid = await client.start_run("shop", {"item": "tea", "quantity": "lots"})
        with pytest.raises(RunError, match=r"InvalidInput.*quantity"):
            await client.result(invalid.run_id, from_offset=invalid.from_offset)

        # bytes that are not a command at all, keyed like a run: whoever waits for that run
        # learns it was rejected, and why
        await rt.log.append(DEFAULT_TOPICS.commands, [OutRecord(b"garbage", b"\x00not avro")])
        with pytest.raises(RunError, match="rejected: undecodable command: not Avro"):
            await asyncio.wait_for(client.result("garbage"), 30)

        huge = await client.start_run("shop", {"item": "x" * 300_000, "quantity": 1})
        with pytest.raises(RunError, match=r"rejected.*exceeds the limit"):
            await client.result(huge.run_id)

        # the worker is still alive: the first run completed and a new one completes too
        assert await client.result(good.run_id, from_offset=good.from_offset) == (
            "mock reply to: buy 2 tea"
        )
        later = await client.start_run("shop", {"item": "milk", "quantity": 1})
        assert "milk" in await client.result(later.run_id, from_offset=later.from_offset)

        letters = await dead_letters(rt.log)
        reasons = [d["wakeline.reason"] for d in letters]
        assert any(r.startswith("undecodable command") for r in reasons)
        assert any("exceeds the limit" in r for r in reasons)
        assert all("wakeline.source" in d for d in letters)


async def test_a_duplicate_start_runs_once(tmp_path: Path) -> None:
    async with local_runtime(make_app(), tmp_path) as rt:
        first = await rt.client.start_run("shop", {"item": "a", "quantity": 1}, run_id="r-dup")
        await rt.client.result("r-dup", from_offset=first.from_offset)
        await rt.client.start_run("shop", {"item": "b", "quantity": 9}, run_id="r-dup")
        again = await rt.client.start_run("shop", {"item": "c", "quantity": 1})
        await rt.client.result(again.run_id, from_offset=again.from_offset)
        events = [e async for e in _journal(rt.client, "r-dup")]
        assert [e.type for e in events].count("RunStarted") == 1
        assert "a" in events[0].payload.input  # type: ignore[union-attr]


async def _journal(client: Client, run_id: str) -> Any:
    async for event in client.events(run_id):
        yield event


async def test_cancel_and_unknown_run_commands(tmp_path: Path) -> None:
    async with local_runtime(make_app(), tmp_path) as rt:
        handle = await rt.client.start_run("napper", 3600)
        await wait_for_event(rt.client, handle.run_id, TimerScheduled)  # a run to cancel
        await rt.client.cancel(handle.run_id, "changed my mind")
        with pytest.raises(RunError, match="cancelled: changed my mind"):
            await asyncio.wait_for(rt.client.result(handle.run_id), 10)

        await rt.client.cancel("ghost-run")
        with pytest.raises(RunError, match="rejected: unknown run ghost-run"):
            await asyncio.wait_for(rt.client.result("ghost-run"), 10)
        partition = 0
        notes = []
        for p in range(await rt.log.partition_count(DEFAULT_TOPICS.notices)):
            for record in await rt.log.read(DEFAULT_TOPICS.notices, p, 0):
                notes.append(notice_codec().decode(record.value))
                partition = p
        assert any(isinstance(n.payload, CommandRejected) for n in notes), partition


@pytest.mark.parametrize("run_id", ["vic1/zz", "[/]", "a b", "", "-x", "x" * 129, "r\x1b[2J"])
async def test_the_client_refuses_a_run_id_that_breaks_the_rule(
    tmp_path: Path, run_id: str
) -> None:
    async with local_runtime(make_app(), tmp_path) as rt:
        with pytest.raises(ValueError, match="invalid run id"):
            await rt.client.start_run("shop", {"item": "tea", "quantity": 1}, run_id=run_id)


async def test_a_raw_start_with_an_invalid_run_id_is_rejected_and_others_are_untouched(
    tmp_path: Path,
) -> None:
    """A start appended without the client, keyed ``vic1/zz``: the worker rejects it (a notice
    and a dead letter), and the run ``vic1`` it could have collided with verifies clean."""
    async with local_runtime(make_app(), tmp_path) as rt:
        victim = await rt.client.start_run("shop", {"item": "tea", "quantity": 1}, run_id="vic1")
        await rt.client.result("vic1", from_offset=victim.from_offset)
        start = StartRun("shop", '{"item": "x", "quantity": 1}', "", None)
        forged = Command("c-forged", "vic1/zz", 0, "raw", start)
        record = OutRecord(b"vic1/zz", command_codec().encode(forged))
        await rt.log.append(DEFAULT_TOPICS.commands, [record])
        with pytest.raises(RunError, match="rejected: invalid run id 'vic1/zz'"):
            await asyncio.wait_for(rt.client.result("vic1/zz"), 10)
        async with Client(rt.log, views_dir=tmp_path / "views") as reader:
            report = await (await reader.views()).verify_audit("vic1")
            assert report.ok and report.events > 0, report
            rows = {r.run_id: r.status for r in (await reader.list()).items}
            assert rows == {"vic1": "completed", "vic1/zz": "rejected"}
            assert [s.seq for s in await reader.steps("vic1")] == [1]  # its one model call


async def test_a_command_too_large_to_decode_is_refused_by_the_client(tmp_path: Path) -> None:
    """The log takes records of any size (chunked), but workers decode commands up to 1 MB:
    the client refuses a bigger one at once instead of leaving a start no worker can read."""
    async with local_runtime(make_app(), tmp_path) as rt:
        before = [await rt.log.end_offset(DEFAULT_TOPICS.commands, p) for p in range(4)]
        too_large = r"StartRun command of \d+ bytes is over the limit"
        with pytest.raises(RecordTooLargeError, match=too_large):
            await rt.client.start_run("shop", {"item": "x" * 2_000_000, "quantity": 1})
        after = [await rt.log.end_offset(DEFAULT_TOPICS.commands, p) for p in range(4)]
        assert after == before
