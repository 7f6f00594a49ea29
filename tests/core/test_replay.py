"""Replay: recorded runs re-drive byte for byte; changed code is caught as nondeterminism."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from golden_agents import make_app, read_golden

from wakeline.cli.main import main as cli
from wakeline.core.activation import Activation, Drifted, Recover
from wakeline.core.run_core import RunCore
from wakeline.replay import replay_journal, replay_run
from wakeline.schemas.codec import event_codec
from wakeline.testing.harness import local_runtime

GOLDEN = Path(__file__).parent.parent / "golden" / "golden-run-1.journal"


def test_golden_history_replays_byte_identically() -> None:
    raw = read_golden(GOLDEN)
    report = replay_journal(make_app(), "golden-run-1", raw)
    assert report.identical and report.ended, report
    types = [event_codec().decode(r).type for r in raw]
    assert types.count("ValueRecorded") == 3 and types.count("ModelCallRequested") == 4
    assert report.checked == len(raw) - 1 - types.count("ModelCallCompleted") - types.count(
        "ToolCallCompleted"
    ) - types.count("TimerFired")


def test_golden_history_with_changed_code_raises_nondeterminism() -> None:
    raw = read_golden(GOLDEN)
    journal = [event_codec().decode(r) for r in raw]
    changed = make_app(prompt="Tell me about")
    core = RunCore("golden-run-1", changed, journal=list(journal))
    out = core.activate(Activation(Recover(), 0, "test"))
    assert isinstance(out.status, Drifted) and out.events == ()
    drift = out.status.error
    first_call = next(e.seq for e in journal if e.type == "ModelCallRequested")
    assert drift.seq == first_call and drift.run_id == "golden-run-1"
    assert (
        "model call mock/mock-1" in drift.recorded and "model call mock/mock-1" in drift.requested
    )
    assert drift.recorded != drift.requested
    assert f"run golden-run-1: nondeterminism at seq {first_call}" in str(drift)

    report = replay_journal(changed, "golden-run-1", raw)
    assert not report.identical and report.divergence is not None
    assert report.divergence.seq == first_call
    assert report.divergence.field == "payload.request_digest"


def test_a_changed_byte_in_the_log_is_reported_as_a_divergence() -> None:
    raw = read_golden(GOLDEN)
    codec = event_codec()
    last = codec.decode(raw[-1])
    tampered = last.payload.__class__(output=last.payload.output.replace("tides", "waves"))  # type: ignore[union-attr,call-arg]
    raw[-1] = codec.encode(type(last)(last.run_id, last.seq, last.time_ms, last.writer, tampered))
    report = replay_journal(make_app(), "golden-run-1", raw)
    assert not report.identical and report.divergence is not None
    assert report.divergence.seq == last.seq


async def test_runs_recorded_on_the_embedded_log_replay_identically(tmp_path: Path) -> None:
    async with local_runtime(make_app(), tmp_path) as rt:
        handles = [await rt.client.start_run("golden", f"topic {i}") for i in range(3)]
        for h in handles:
            await rt.client.result(h.run_id)
        for h in handles:
            report = await replay_run(rt.log, make_app(), h.run_id)
            assert report.identical and report.ended and report.checked > 5


def test_cli_replay_exit_codes(tmp_path: Path) -> None:
    import asyncio

    async def record() -> str:
        async with local_runtime(make_app(), tmp_path) as rt:
            handle = await rt.client.start_run("golden", "cli")
            await rt.client.result(handle.run_id)
            return handle.run_id

    run_id = asyncio.run(record())
    target = str(Path(__file__).parent.parent / "support" / "golden_agents.py") + ":make_app()"
    runner = CliRunner()
    ok = runner.invoke(cli, ["--data", str(tmp_path), "replay", run_id, target])
    assert ok.exit_code == 0, ok.output
    assert "byte-identical" in ok.output
    missing = runner.invoke(cli, ["--data", str(tmp_path), "replay", "nope", target])
    assert missing.exit_code == 2 and "no events" in missing.output


@pytest.mark.parametrize("prompt", ["Tell me about"])
def test_cli_replay_reports_divergence(tmp_path: Path, prompt: str) -> None:
    raw = read_golden(GOLDEN)
    report = replay_journal(make_app(prompt=prompt), "golden-run-1", raw)
    assert (
        report.divergence is not None and report.divergence.recorded != report.divergence.replayed
    )
