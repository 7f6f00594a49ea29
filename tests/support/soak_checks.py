"""Checks of the CLI soak (``tests/scale/test_kafka_cli_soak.py``): journals read from the log,
what the provider billed, and why a call was sent more than once."""

from __future__ import annotations

import itertools
import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from wakeline.core.app import App
from wakeline.projections.audit import foreign_records, log_chain_problems
from wakeline.replay import replay_journal
from wakeline.schemas.events import (
    TERMINAL_TYPES,
    Event,
    ModelCallCompleted,
    ModelCallInterrupted,
    ModelCallRequested,
    RunStarted,
)
from wakeline.testing.cli_fleet import CliFleet, Incarnation
from wakeline.testing.fake_llm import RequestRecord
from wakeline.testing.journals import Journals
from wakeline.testing.soak_agents import CALLS
from wakeline.topics.port import Record
from wakeline.topics.signing import RecordSigner


@dataclass(frozen=True)
class Totals:
    """Sum of the journaled model call results of a run: what the provider billed."""

    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: Decimal = Decimal(0)

    def __add__(self, other: Totals) -> Totals:
        return Totals(
            self.calls + other.calls,
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cached_input_tokens + other.cached_input_tokens,
            self.cache_write_tokens + other.cache_write_tokens,
            self.reasoning_tokens + other.reasoning_tokens,
            self.cost_usd + other.cost_usd,
        )


def totals(events: Iterable[Event]) -> Totals:
    out = Totals()
    for e in events:
        if isinstance(e.payload, ModelCallCompleted):
            u = e.payload.usage
            out = out + Totals(
                1,
                u.input_tokens,
                u.output_tokens,
                u.cached_input_tokens,
                u.cache_write_tokens,
                u.reasoning_tokens,
                e.payload.cost_usd or Decimal(0),
            )
    return out


def last_user_text(request_json: str) -> str:
    return str(json.loads(request_json)["messages"][-1]["content"])


def check_journal(
    run_id: str, recs: list[tuple[Record, Event]], signer: RecordSigner | None = None
) -> list[str]:
    """Dense seqs from 0, no duplicate; started, completed once; one result per model call, and
    every other request closed by ``ModelCallInterrupted`` (an attempt a recovery sent again);
    each event carries the hash of the run's previous record (the chain survives every owner);
    with ``signer``, every record is signed with the fleet's record key."""
    events = [e for _, e in recs]
    seqs = [e.seq for e in events]
    types = [e.type for e in events]
    problems: list[str] = []
    if seqs != list(range(len(seqs))):
        dups = sorted(s for s, n in Counter(seqs).items() if n > 1)
        holes = sorted(set(range(max(seqs) + 1)) - set(seqs))
        problems.append(f"{run_id}: seqs not dense (duplicates {dups}, holes {holes}): {seqs}")
    if not events or not isinstance(events[0].payload, RunStarted):
        problems.append(f"{run_id}: does not begin with RunStarted: {types}")
    terminal = [e.type for e in events if isinstance(e.payload, TERMINAL_TYPES)]
    if terminal != ["RunCompleted"]:
        problems.append(f"{run_id}: terminal events {terminal}")
    requested = {e.seq for e in events if isinstance(e.payload, ModelCallRequested)}
    closed = [e.payload.step for e in events if isinstance(e.payload, ModelCallInterrupted)]
    steps = [e.payload.step for e in events if isinstance(e.payload, ModelCallCompleted)]
    if len(steps) != CALLS or len(set(steps)) != CALLS or set(steps) | set(closed) != requested:
        problems.append(
            f"{run_id}: requests {sorted(requested)}, results for {steps}, interrupted {closed}:"
            f" {types}"
        )
    chain = log_chain_problems([r for r, _ in recs])
    unchained = [e.seq for e in events[1:] if not e.prev]
    if chain or unchained or (events and events[0].prev):
        problems.append(f"{run_id}: the log's hash chain: {chain}, unchained seqs {unchained}")
    foreign = foreign_records([r for r, _ in recs], signer)
    if foreign:
        problems.append(f"{run_id}: records not signed by the fleet: {foreign}")
    return problems


def completion_times(journals: Journals) -> dict[str, int]:
    """Prompt -> append time (Kafka record timestamp, ms) of its first ModelCallCompleted."""
    out: dict[str, int] = {}
    for recs in journals.records.values():
        requests: dict[int, ModelCallRequested] = {}
        for record, e in recs:
            if isinstance(e.payload, ModelCallRequested):
                requests[e.seq] = e.payload
            elif isinstance(e.payload, ModelCallCompleted) and e.payload.step in requests:
                prompt = last_user_text(requests[e.payload.step].request)
                at = record.timestamp_ms or e.time_ms
                out[prompt] = min(out.get(prompt, at), at)
    return out


def requested_before(journals: Journals, writer: str | None, before_s: float) -> set[str]:
    """Prompts whose ModelCallRequested ``writer`` appended before ``before_s``."""
    out: set[str] = set()
    for recs in journals.records.values():
        for record, e in recs:
            if not isinstance(e.payload, ModelCallRequested) or e.writer != writer:
                continue
            if (record.timestamp_ms or e.time_ms) < before_s * 1000:
                out.add(last_user_text(e.payload.request))
    return out


def sender(fleet: CliFleet, r: RequestRecord) -> Incarnation | None:
    return fleet.by_tag(r.path.strip("/").split("/")[0])


def resend_cause(fleet: CliFleet, first: RequestRecord, again: RequestRecord) -> str:
    """Why ``again`` re-sent ``first``'s call: its sender died (or paused, or exited by
    itself) between the two requests, or it was alive and lost the run at a rebalance."""
    inc = sender(fleet, first)
    if inc is None:
        return "unknown sender"
    window = (first.received_at, again.received_at)
    if inc.killed_at is not None and window[0] <= inc.killed_at <= window[1]:
        return "sender killed"
    if any(window[0] <= stop <= window[1] for stop, _ in inc.pauses):
        return "sender killed"
    if inc.exited_at is not None and window[0] <= inc.exited_at <= window[1] + 1.0:
        return "sender exited by itself"
    return "sender alive at a rebalance"


Problems = dict[str, list[str]]
CLOCK_SLACK_MS = 1.0  # Kafka timestamps are whole milliseconds


def sends_by_prompt(requests: Iterable[RequestRecord]) -> dict[str, list[RequestRecord]]:
    out: dict[str, list[RequestRecord]] = {}
    for r in requests:
        out.setdefault(str(r.body["messages"][-1]["content"]), []).append(r)
    return out


def journal_problems(
    journals: Journals, run_ids: Iterable[str], signer: RecordSigner | None = None
) -> Problems:
    """Every run started and completed exactly once, with a dense journal (signed, with
    ``signer``)."""
    problems: Problems = {"run never started": [], "journal": []}
    for run_id in run_ids:
        recs = journals.records.get(run_id, [])
        if not recs:
            problems["run never started"].append(run_id)
        else:
            problems["journal"] += check_journal(run_id, recs, signer)
    return problems


def late_requests(
    journals: Journals, requests: list[RequestRecord], fleet: CliFleet, paused: list[Incarnation]
) -> tuple[Problems, int]:
    """Requests that reached the provider after the append of their call's result, except the
    paused worker's that it had begun before its pause (fencing cannot recall an HTTP request
    already begun: docs/guarantees.md); and how many of those there were."""
    problems: Problems = {"request for a call never journaled": [], "request after its result": []}
    completed_ms = completion_times(journals)
    begun: set[str] = set()
    for inc in paused:
        begun |= requested_before(journals, inc.worker_id(), inc.pauses[0][0])
    zombie_ok = 0
    for prompt, rs in sorted(sends_by_prompt(requests).items()):
        if prompt not in completed_ms:
            problems["request for a call never journaled"].append(prompt)
            continue
        for r in rs:
            late_ms = r.received_at * 1000 - completed_ms[prompt]
            if late_ms <= CLOCK_SLACK_MS:
                continue
            inc = sender(fleet, r)
            if inc in paused and r.received_at >= (inc.pauses[0][1] or 0) and prompt in begun:
                zombie_ok += 1
                continue
            problems["request after its result"].append(
                f"{prompt!r} from {inc.tag if inc else r.path} {late_ms:.0f} ms after the append"
                f" ({len(rs)} requests)"
            )
    return problems, zombie_ok


def resend_causes(fleet: CliFleet, requests: list[RequestRecord]) -> Counter[str]:
    causes: Counter[str] = Counter()
    for rs in sends_by_prompt(requests).values():
        ordered = sorted(rs, key=lambda r: r.received_at)
        for first, again in itertools.pairwise(ordered):
            causes[resend_cause(fleet, first, again)] += 1
    return causes


def cost_problems(journals: Journals, reference: dict[str, Totals]) -> Problems:
    """Journaled tokens and cost equal the uncrashed reference's."""
    got = {r: totals(e for _, e in journals.records.get(r, [])) for r in reference}
    total_got, total_ref = sum(got.values(), Totals()), sum(reference.values(), Totals())
    if total_got == total_ref:
        return {}
    differ = [
        f"{r}: {got[r].calls} results, ${got[r].cost_usd}"
        for r in reference
        if got[r] != reference[r]
    ]
    return {
        "journaled cost and tokens": [
            f"journaled {total_got} != reference {total_ref}; {len(differ)} runs differ, e.g. "
            f"{differ[:5]}"
        ]
    }


def replay_problems(journals: Journals, app: App, run_ids: Iterable[str]) -> Problems:
    """Replay of every journal is byte-identical."""
    out: list[str] = []
    for run_id in run_ids:
        raw = [record.value for record, _ in journals.records.get(run_id, [])]
        try:
            report = replay_journal(app, run_id, raw)
        except Exception as exc:
            out.append(f"{run_id}: {type(exc).__name__}: {exc}")
            continue
        if not report.identical:
            out.append(f"{run_id}: {report.divergence}")
    return {"replay": out}


def summary(problems: Problems) -> str:
    return "\n".join(
        f"{what}: {len(items)}, e.g.\n    " + "\n    ".join(items[:4])
        for what, items in problems.items()
        if items
    )
