"""What :class:`~wakeline.client.Client` returns and raises (importable from
:mod:`wakeline.client` too)."""

from __future__ import annotations

from dataclasses import dataclass

from wakeline.core.errors import WakelineError


class RunError(WakelineError):
    """A run did not complete: it failed, was cancelled, drifted or was rejected."""

    def __init__(self, run_id: str, status: str, message: str) -> None:
        self.run_id = run_id
        self.status = status
        super().__init__(f"run {run_id} {status}: {message}")


@dataclass(frozen=True, slots=True)
class RunHandle:
    run_id: str
    partition: int
    from_offset: int
    """Events offset at or before the run's first event: where to start reading."""
    command_id: str = ""  # of the start command (a session turn's RunStarted names it)
    notices_from: int = 0  # a turn's: the notices offset when it was sent (wakeline.sessions)


class NoViewsError(WakelineError):
    """A query needs the client's views: ``Client(log, views_dir=...)``."""
