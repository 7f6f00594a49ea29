"""The hash chain the log carries: every event holds the sha256 of its run's previous record,
set by the fenced writer; the audit check of the log names a record changed in place.  Runs
resumed by another owner after SIGKILLs keep the chain too: the soak checks assert it
(``tests/support/soak_checks.py``)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from cli_agents import app

from wakeline.projections.audit import log_chain_problems
from wakeline.replay import read_journal
from wakeline.schemas.codec import event_codec, record_hash
from wakeline.testing import local_runtime
from wakeline.topics.port import Record


async def test_every_event_carries_the_hash_of_the_previous_record(tmp_path: Path) -> None:
    for calls in (2, 3):  # the second run starts on a restarted worker over the same log
        async with local_runtime(app, tmp_path) as rt:
            await rt.client.result(
                (await rt.client.start_run("chatty", calls, run_id=f"c{calls}")).run_id
            )
            raws = await read_journal(rt.log, f"c{calls}", topics=rt.topics)
        events = [event_codec().decode(raw) for raw in raws]
        assert events[0].prev == ""
        assert [e.prev for e in events[1:]] == [record_hash(raw) for raw in raws[:-1]]

    records = [Record("t", 0, i, b"c3", raw) for i, raw in enumerate(raws)]
    assert log_chain_problems(records) == []
    changed = replace(records[2], value=raws[2].replace(b"mock", b"m0ck"))
    [problem] = log_chain_problems([*records[:2], changed, *records[3:]])
    assert (problem.seq, problem.offset) == (
        2,
        2,
    ) and "seq 3 carries another hash" in problem.problem
