"""Regression bundles: recorded runs as tests of the current code.

:func:`read` and :func:`write` put each run's journal (the raw records, exactly as the log
holds them) and its agent into one self-contained file, ``<run id>.wlrun.json``.  :func:`check`
replays each bundle against an app with no provider reachable
(:func:`wakeline.replay.replay_journal`): every model call, tool and step result comes from the
bundle, and the events the code produces must be byte-identical to the recorded ones.  A
changed prompt changes a request digest and fails at that call; a changed output fails at the
run's terminal event; a change that alters nothing the run journaled passes.  Records written
by an older wakeline stay readable (the codec keeps every schema version), so bundles survive
upgrades.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wakeline.core.app import App
from wakeline.replay import ReplayReport, read_journal, replay_journal
from wakeline.schemas.codec import event_codec
from wakeline.schemas.events import RunStarted
from wakeline.topics.port import Log
from wakeline.topics.specs import DEFAULT_TOPICS, Topics

FORMAT = "wakeline-regression-bundle/1"
SUFFIX = ".wlrun.json"


class BundleError(ValueError):
    """A file is not a regression bundle wakeline can read; the message says why."""


@dataclass(frozen=True, slots=True)
class Bundle:
    """One recorded run: its id, agent and journal records."""

    run_id: str
    agent: str
    records: tuple[bytes, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "run_id": self.run_id,
            "agent": self.agent,
            "records": [base64.b64encode(r).decode("ascii") for r in self.records],
        }

    @classmethod
    def from_json(cls, value: Any, where: str) -> Bundle:
        if not isinstance(value, dict) or value.get("format") != FORMAT:
            raise BundleError(f"{where}: not a {FORMAT} file")
        try:
            records = tuple(base64.b64decode(r, validate=True) for r in value["records"])
            return cls(str(value["run_id"]), str(value["agent"]), records)
        except (KeyError, TypeError, ValueError) as exc:
            raise BundleError(f"{where}: malformed bundle ({exc})") from exc


@dataclass(frozen=True, slots=True)
class Checked:
    """A bundle replayed against the current code."""

    path: Path
    bundle: Bundle
    report: ReplayReport

    @property
    def passed(self) -> bool:
        return self.report.identical

    def describe(self) -> str:
        name = f"{self.path.name} ({self.bundle.agent})"
        if self.report.identical:
            return f"ok       {name}: {self.report.checked} events reproduced byte for byte"
        d = self.report.divergence
        assert d is not None
        return (
            f"DIVERGED {name} at seq {d.seq}, field {d.field}\n"
            f"  recorded: {d.recorded}\n  replayed: {d.replayed}"
        )


async def read(
    log: Log, run_ids: Sequence[str], *, topics: Topics = DEFAULT_TOPICS
) -> list[Bundle]:
    """The bundles of ``run_ids`` from the log; ``LookupError`` for a run with no events."""
    bundles = []
    for run_id in run_ids:
        records = await read_journal(log, run_id, topics=topics)
        if not records:
            raise LookupError(f"run {run_id} has no events")
        started = event_codec().decode(records[0]).payload
        agent = started.agent if isinstance(started, RunStarted) else ""
        bundles.append(Bundle(run_id, agent, tuple(records)))
    return bundles


def write(bundles: Iterable[Bundle], out: Path) -> list[Path]:
    """One file per bundle in the directory ``out`` (made if missing)."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for bundle in bundles:
        path = out / f"{bundle.run_id}{SUFFIX}"
        path.write_text(json.dumps(bundle.to_json()) + "\n", encoding="utf-8")
        written.append(path)
    return written


def bundle_paths(paths: Iterable[Path]) -> list[Path]:
    """The bundle files among ``paths`` (directories are searched recursively), sorted."""
    found: list[Path] = []
    for path in paths:
        found += sorted(path.rglob(f"*{SUFFIX}")) if path.is_dir() else [path]
    return found


def load(path: Path) -> Bundle:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{path}: unreadable ({exc})") from exc
    return Bundle.from_json(value, str(path))


def check_bundle(app: App, path: Path) -> Checked:
    bundle = load(path)
    return Checked(path, bundle, replay_journal(app, bundle.run_id, list(bundle.records)))


def check(app: App, paths: Iterable[Path]) -> list[Checked]:
    """Replay every bundle under ``paths`` against ``app``, no provider reachable."""
    return [check_bundle(app, path) for path in bundle_paths(paths)]
