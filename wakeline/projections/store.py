"""A projection store: one RocksDB database, folded from topic records in atomic batches.

Like quix-streams' RocksDB partitions, the state a batch of records produced and the offsets it
reflects are written together: :meth:`ProjectionStore.fold` collects every write of every
projection in a :class:`BatchView` (an overlay dict that later reads of the same batch see) and
writes them, with the next offset of each ``(topic, partition)`` read, in one
``rocksdict.WriteBatch``.  A crash before that write leaves the old state *and* the old offsets;
the records are folded again on restart.  Records below the stored offset are skipped, so
folding a record twice is harmless.

Offsets are kept per store, not per projection: a store is folded by one fixed set of
projections (adding one means :func:`~wakeline.projections.rebuild.rebuild`).

Keys are UTF-8 bytes; values are bytes (JSON text for most rows, see :func:`dump_json`).
Store layout of this module:

* ``meta/offset/<topic>/<partition:06d>`` -> next offset to read (ASCII decimal);
* ``meta/counter/<name>`` -> a counter (ASCII decimal), e.g. ``projection_errors``;
* ``err/<topic>/<partition:06d>/<offset:012d>`` -> JSON ``{"error": ...}`` of a skipped record.

A store given a :class:`~wakeline.topics.signing.RecordSigner` skips, the same way, every
events-topic record that a holder of the record key did not sign.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

from rocksdict import DBCompressionType, Options, Rdict, WriteBatch

from wakeline.fsutil import private_dir
from wakeline.jsonutil import dumps
from wakeline.projections import DEFAULT_TOPIC_NAMES, EVENTS, LEDGER, NOTICES
from wakeline.schemas.codec import DecodeError, event_codec, notice_codec
from wakeline.schemas.commands import Notice
from wakeline.schemas.events import Event
from wakeline.schemas.ledger import LedgerRecord, ledger_codec
from wakeline.topics.port import Record
from wakeline.topics.signing import RecordSigner, UntrustedRecordError

log = logging.getLogger(__name__)

Decoded = Event | Notice
Decoder = Callable[[bytes], Decoded | LedgerRecord]
JsonObject = dict[str, Any]

PROJECTION_ERRORS = "projection_errors"
"""Counter of records that could not be decoded (and were skipped)."""

_SCAN_PAGE = 256


def offset_key(topic: str, partition: int) -> bytes:
    return f"meta/offset/{topic}/{partition:06d}".encode()


def counter_key(name: str) -> bytes:
    return f"meta/counter/{name}".encode()


def error_key(topic: str, partition: int, offset: int) -> bytes:
    return f"err/{topic}/{partition:06d}/{offset:012d}".encode()


def dump_json(value: Mapping[str, Any]) -> bytes:
    """Canonical JSON bytes (sorted keys), so equal state is equal bytes."""
    return dumps(value).encode()


def load_json(data: bytes) -> JsonObject:
    loaded: JsonObject = json.loads(data)
    return loaded


class BatchView:
    """The reads and writes of one fold.  Reads see the batch's own pending writes first."""

    __slots__ = ("_db", "_pending")

    def __init__(self, db: Rdict) -> None:
        self._db = db
        self._pending: dict[bytes, bytes | None] = {}

    def get(self, key: bytes) -> bytes | None:
        if key in self._pending:
            return self._pending[key]
        value: bytes | None = self._db.get(key)
        return value

    def put(self, key: bytes, value: bytes) -> None:
        self._pending[key] = value

    def delete(self, key: bytes) -> None:
        self._pending[key] = None

    def get_json(self, key: bytes) -> JsonObject | None:
        data = self.get(key)
        return None if data is None else load_json(data)

    def put_json(self, key: bytes, value: Mapping[str, Any]) -> None:
        self.put(key, dump_json(value))

    def get_int(self, key: bytes) -> int:
        data = self.get(key)
        return 0 if data is None else int(data)

    def put_int(self, key: bytes, value: int) -> None:
        self.put(key, str(value).encode())

    def incr(self, key: bytes, by: int = 1) -> int:
        value = self.get_int(key) + by
        self.put_int(key, value)
        return value

    def __len__(self) -> int:
        return len(self._pending)

    def write_batch(self) -> WriteBatch:
        """All pending writes as one ``WriteBatch`` (to be written exactly once)."""
        wb = WriteBatch(raw_mode=True)
        for key, value in self._pending.items():
            if value is None:
                wb.delete(key)
            else:
                wb.put(key, value)
        return wb


class Projection(Protocol):
    """Folds records of some topics into keys of a store.

    ``topics`` are logical names (:data:`~wakeline.projections.EVENTS`,
    :data:`~wakeline.projections.NOTICES`, :data:`~wakeline.projections.LEDGER`).  ``apply``
    gets the record decoded by its topic's codec (a :data:`Decoded` for events and notices, a
    :class:`~wakeline.ledger.LedgerRecord` for the ledger); it must only touch the store
    through ``view`` and must be deterministic: the same records give the same bytes.
    """

    @property
    def name(self) -> str: ...

    @property
    def topics(self) -> tuple[str, ...]: ...

    def apply(self, view: BatchView, record: Record, decoded: Any) -> None: ...


Route = tuple[Decoder, tuple[Projection, ...], bool]
"""(decoder, projections reading the topic, whether its records must be signed)."""


def _decoder(logical: str) -> Decoder:
    if logical == EVENTS:
        return event_codec().decode
    if logical == NOTICES:
        return notice_codec().decode
    if logical == LEDGER:
        return ledger_codec().decode
    raise ValueError(f"no decoder for logical topic {logical!r}")


def routes(
    projections: Sequence[Projection], topic_names: Mapping[str, str] | None = None
) -> dict[str, Route]:
    """Physical topic name -> (decoder, projections reading it), in projection order."""
    names = DEFAULT_TOPIC_NAMES if topic_names is None else topic_names
    found: dict[str, tuple[Decoder, list[Projection], bool]] = {}
    for projection in projections:
        for logical in projection.topics:
            if logical not in names:
                raise ValueError(f"{projection.name}: no topic name for {logical!r}")
            entry = found.setdefault(names[logical], (_decoder(logical), [], logical == EVENTS))
            entry[1].append(projection)
    return {topic: (dec, tuple(projs), signed) for topic, (dec, projs, signed) in found.items()}


def subscribed_topics(
    projections: Sequence[Projection], topic_names: Mapping[str, str] | None = None
) -> list[str]:
    """The physical topics ``projections`` read, in a stable order."""
    return list(routes(projections, topic_names))


def _options() -> Options:
    opts = Options(raw_mode=True)
    opts.create_if_missing(True)
    opts.set_compression_type(DBCompressionType.lz4())
    opts.set_max_background_jobs(2)
    opts.set_keep_log_file_num(3)
    opts.set_max_total_wal_size(64 << 20)
    return opts


class ProjectionStore:
    """One RocksDB database (raw bytes keys and values) holding projection state and offsets.

    Not thread-safe: use it from one thread (the event loop).  RocksDB allows one process to
    open a database for writing.
    """

    def __init__(self, path: str | Path, *, signer: RecordSigner | None = None) -> None:
        self.path = private_dir(Path(path))  # RocksDB's own files go inside, unreadable to others
        self._db = Rdict(str(self.path), _options())
        self._signer = signer
        self._closed = False

    @staticmethod
    def destroy(path: str | Path) -> None:
        """Delete the database at ``path`` (it must not be open)."""
        Rdict.destroy(str(path), _options())

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._db.close()

    def __enter__(self) -> ProjectionStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- reads ---------------------------------------------------------------------------

    def get(self, key: bytes) -> bytes | None:
        value: bytes | None = self._db.get(key)
        return value

    def get_json(self, key: bytes) -> JsonObject | None:
        data = self.get(key)
        return None if data is None else load_json(data)

    def scan_page(
        self, prefix: bytes, *, start: bytes | None = None, limit: int = _SCAN_PAGE
    ) -> list[tuple[bytes, bytes]]:
        """Up to ``limit`` pairs whose key starts with ``prefix``, from ``start`` (inclusive)."""
        out: list[tuple[bytes, bytes]] = []
        it = self._db.iter()
        try:
            it.seek(prefix if start is None or start < prefix else start)
            while len(out) < limit and it.valid():
                key: bytes = it.key()
                if not key.startswith(prefix):
                    break
                out.append((key, it.value()))
                it.next()
        finally:
            del it  # a live iterator keeps RocksDB open
        return out

    def scan(self, prefix: bytes, *, start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        """Every pair whose key starts with ``prefix``, in key order, fetched page by page."""
        page = self.scan_page(prefix, start=start)
        while page:
            yield from page
            if len(page) < _SCAN_PAGE:
                return
            page = self.scan_page(prefix, start=page[-1][0] + b"\x00")

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        """Every pair of the database (offsets and counters included), in key order."""
        return self.scan(b"")

    def offset(self, topic: str, partition: int) -> int:
        """The next offset of ``topic``/``partition`` to fold (0 if none was folded)."""
        data = self.get(offset_key(topic, partition))
        return 0 if data is None else int(data)

    def put(self, key: bytes, value: bytes) -> None:
        """Write one metadata key outside a fold (e.g. a format mark)."""
        self._db.put(key, value)

    def rewind(self, topic: str, partition: int, offset: int) -> None:
        """Fold ``topic``/``partition`` again from ``offset`` (re-folding overwrites the same
        keys with the same values, so the state converges on a fresh fold's)."""
        self._db.put(offset_key(topic, partition), str(offset).encode())

    def counter(self, name: str) -> int:
        data = self.get(counter_key(name))
        return 0 if data is None else int(data)

    # -- fold ----------------------------------------------------------------------------

    def fold(
        self,
        records: Iterable[Record],
        projections: Sequence[Projection],
        *,
        topic_names: Mapping[str, str] | None = None,
    ) -> int:
        """Apply ``records`` to ``projections`` and write the result in one ``WriteBatch``.

        Records below the stored offset of their partition are skipped; undecodable records,
        and unsigned events when the store has a signer, are counted (``projection_errors``)
        and skipped.  Any other exception raised by a
        projection propagates and nothing of the batch is written.  Returns the number of
        records consumed (offsets advanced).
        """
        return self._fold(((r, None) for r in records), projections, topic_names)

    def fold_own(
        self,
        records: Iterable[tuple[Record, Any]],
        projections: Sequence[Projection],
        *,
        topic_names: Mapping[str, str] | None = None,
    ) -> int:
        """:meth:`fold` for records this process has just appended, each given with the
        value it encoded: they are not decoded again, and their signature (this process
        made it) is not checked again."""
        return self._fold(iter(records), projections, topic_names)

    def _fold(
        self,
        records: Iterator[tuple[Record, Any]],
        projections: Sequence[Projection],
        topic_names: Mapping[str, str] | None,
    ) -> int:
        table = routes(projections, topic_names)
        view = BatchView(self._db)
        next_offsets: dict[tuple[str, int], int] = {}
        consumed = 0
        for record, decoded in records:
            where = (record.topic, record.partition)
            current = next_offsets.get(where)
            if current is None:
                current = self.offset(*where)
            if record.offset < current:
                continue
            route = table.get(record.topic)
            if route is None:
                pass
            elif decoded is None:
                _apply(view, route, record, self._signer)
            else:
                for projection in route[1]:
                    projection.apply(view, record, decoded)
            next_offsets[where] = record.offset + 1
            consumed += 1
        if not next_offsets:
            return 0
        for (topic, partition), offset in next_offsets.items():
            view.put_int(offset_key(topic, partition), offset)
        self._write(view)
        return consumed

    def _write(self, view: BatchView) -> None:
        self._db.write(view.write_batch())


def _apply(view: BatchView, route: Route, record: Record, signer: RecordSigner | None) -> None:
    decode, projections, signed = route
    try:
        decoded = decode(record.value)
        if signed and signer is not None:
            signer.check(record)
    except (DecodeError, UntrustedRecordError) as exc:
        log.warning("skipped %s[%s]@%s: %s", record.topic, record.partition, record.offset, exc)
        view.incr(counter_key(PROJECTION_ERRORS))
        view.put_json(error_key(record.topic, record.partition, record.offset), {"error": str(exc)})
        return
    for projection in projections:
        projection.apply(view, record, decoded)
