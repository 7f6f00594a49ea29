"""The journal projection: the raw journals workers resume runs from.

Keys:

* ``jrn/<run_id>/<seq:012d>`` -> the record value exactly as it is on the events topic;
* ``open/<partition:06d>/<run_id>`` -> ``b""`` while the run has events but no terminal event
  (``RunCompleted``, ``RunFailed``, ``RunCancelled``); ``partition`` is the events partition;
* ``fin/<run_id>`` -> seq of the run's terminal event (ASCII decimal).
"""

from __future__ import annotations

from wakeline.projections import EVENTS
from wakeline.projections.store import BatchView, Decoded, ProjectionStore
from wakeline.schemas.commands import Notice
from wakeline.topics.port import Record

_SEQ_DIGITS = 12


def journal_key(run_id: str, seq: int) -> bytes:
    return f"jrn/{run_id}/{seq:0{_SEQ_DIGITS}d}".encode()


def journal_prefix(run_id: str) -> bytes:
    return f"jrn/{run_id}/".encode()


def open_key(partition: int, run_id: str) -> bytes:
    return f"open/{partition:06d}/{run_id}".encode()


def open_prefix(partition: int) -> bytes:
    return f"open/{partition:06d}/".encode()


def finished_key(run_id: str) -> bytes:
    return f"fin/{run_id}".encode()


def is_seq_suffix(key: bytes, prefix: bytes) -> bool:
    """Whether ``key`` is ``prefix`` + a seq (and not a key of a run id extending the prefix)."""
    rest = key[len(prefix) :]
    return len(rest) == _SEQ_DIGITS and rest.isdigit()


class JournalProjection:
    """Folds the events topic into raw journals and the set of open runs per partition.

    The reading methods need the store the projection folds into: pass it to the
    constructor (folding itself only uses the batch view it is given).
    """

    name = "journal"
    topics = (EVENTS,)

    def __init__(self, store: ProjectionStore | None = None) -> None:
        self._store = store

    def apply(self, view: BatchView, record: Record, decoded: Decoded) -> None:
        if isinstance(decoded, Notice):
            return
        run_id = decoded.run_id
        view.put(journal_key(run_id, decoded.seq), record.value)
        if decoded.is_terminal:
            view.delete(open_key(record.partition, run_id))
            view.put(finished_key(run_id), str(decoded.seq).encode())
        elif view.get(finished_key(run_id)) is None:
            view.put(open_key(record.partition, run_id), b"")

    @property
    def store(self) -> ProjectionStore:
        if self._store is None:
            raise RuntimeError("JournalProjection was created without a store to read")
        return self._store

    def open_runs(self, partition: int) -> list[str]:
        """Run ids of ``partition`` (of the events topic) that have no terminal event."""
        prefix = open_prefix(partition)
        return [key[len(prefix) :].decode() for key, _ in self.store.scan(prefix)]

    def load(self, run_id: str) -> list[bytes]:
        """The run's raw event records, in seq order (empty if the run is unknown)."""
        prefix = journal_prefix(run_id)
        return [value for key, value in self.store.scan(prefix) if is_seq_suffix(key, prefix)]

    def raw(self, run_id: str, seq: int) -> bytes | None:
        """The record of the run's event ``seq`` (None if not folded)."""
        return self.store.get(journal_key(run_id, seq))

    def has_run(self, run_id: str) -> bool:
        prefix = journal_prefix(run_id)
        return any(is_seq_suffix(key, prefix) for key, _ in self.store.scan(prefix))

    def is_finished(self, run_id: str) -> bool:
        return self.store.get(finished_key(run_id)) is not None
