"""Python mirrors of ``command.avsc`` (commands topic) and ``notice.avsc`` (notices topic)."""

from __future__ import annotations

from dataclasses import dataclass

from wakeline.schemas.events import Budget, Fork, Resolution, Session


@dataclass(frozen=True, slots=True)
class StartRun:
    agent: str
    input: str
    tenant: str = ""
    budget: Budget | None = None
    fork: Fork | None = None
    version: str = ""
    session: Session | None = None


@dataclass(frozen=True, slots=True)
class CancelRun:
    reason: str = ""


@dataclass(frozen=True, slots=True)
class ResumeRun:
    pass


@dataclass(frozen=True, slots=True)
class ResolveGate:
    gate: str
    approved: bool
    reason: str = ""


@dataclass(frozen=True, slots=True)
class RaiseBudget:
    metric: str
    limit: str


@dataclass(frozen=True, slots=True)
class ResolveInDoubt:
    step: int
    resolution: Resolution
    result: str = ""


@dataclass(frozen=True, slots=True)
class UpgradeRun:
    """Move a run to ``to_version`` of its agent; ``wakeline runs upgrade`` sends it after the
    run replayed against that code with no divergence up to ``checked_seq``."""

    to_version: str
    checked_seq: int
    by: str = ""


CommandPayload = (
    StartRun | CancelRun | ResumeRun | ResolveGate | RaiseBudget | ResolveInDoubt | UpgradeRun
)
COMMAND_TYPES: tuple[type[CommandPayload], ...] = (
    StartRun,
    CancelRun,
    ResumeRun,
    ResolveGate,
    RaiseBudget,
    ResolveInDoubt,
    UpgradeRun,
)


@dataclass(frozen=True, slots=True)
class Command:
    command_id: str
    run_id: str
    time_ms: int
    issuer: str
    payload: CommandPayload

    @property
    def type(self) -> str:
        return type(self.payload).__name__


@dataclass(frozen=True, slots=True)
class RunDrifted:
    seq: int
    recorded: str
    requested: str
    message: str


@dataclass(frozen=True, slots=True)
class CommandRejected:
    command_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class RunResumed:
    from_seq: int
    reason: str


NoticePayload = RunDrifted | CommandRejected | RunResumed
NOTICE_TYPES: tuple[type[NoticePayload], ...] = (RunDrifted, CommandRejected, RunResumed)


@dataclass(frozen=True, slots=True)
class Notice:
    run_id: str
    time_ms: int
    writer: str
    payload: NoticePayload

    @property
    def type(self) -> str:
        return type(self.payload).__name__
