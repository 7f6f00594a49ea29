"""What a partition owner needs from its worker: the pieces every partition shares."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

from wakeline.actors.budget_waits import BudgetWaits
from wakeline.actors.journal_sync import JournalSync
from wakeline.actors.lag import LagProbe
from wakeline.actors.outputs import SideOutputs
from wakeline.core.app import App
from wakeline.deltas import DeltaPublisher
from wakeline.ledger import Ledger
from wakeline.projections.journal import JournalProjection
from wakeline.projections.store import ProjectionStore
from wakeline.telemetry.runtime import Telemetry
from wakeline.topics.port import Log
from wakeline.topics.signing import RecordSigner
from wakeline.topics.specs import Topics

if TYPE_CHECKING:
    from wakeline.actors.owner import PartitionOwner


class Shared(Protocol):
    """Implemented by :class:`~wakeline.actors.worker.Worker`."""

    @property
    def worker_id(self) -> str: ...
    @property
    def app(self) -> App: ...
    @property
    def log(self) -> Log: ...
    @property
    def topics(self) -> Topics: ...
    @property
    def group(self) -> str: ...
    @property
    def store(self) -> ProjectionStore: ...
    @property
    def journal(self) -> JournalProjection: ...
    @property
    def signer(self) -> RecordSigner | None: ...
    @property
    def journal_sync(self) -> JournalSync: ...
    @property
    def topic_names(self) -> Mapping[str, str]: ...
    @property
    def telemetry(self) -> Telemetry: ...
    @property
    def ledger(self) -> Ledger: ...
    @property
    def deltas(self) -> DeltaPublisher: ...
    @property
    def budget_waits(self) -> BudgetWaits: ...
    @property
    def outputs(self) -> SideOutputs: ...
    @property
    def lag(self) -> LagProbe: ...
    @property
    def max_input_bytes(self) -> int: ...
    @property
    def partitions(self) -> int:
        """The partition count of the commands (and events) topic."""
        ...

    def now_ms(self) -> int: ...

    def rewind(self, partition: int, offset: int) -> None:
        """Make the commands consumer read ``partition`` again from ``offset``."""
        ...

    def on_opened(self, owner: PartitionOwner) -> None: ...

    def on_fenced(self, owner: PartitionOwner) -> None: ...
