"""Record signatures: telling the partition writer's records from anyone else's appends.

Kafka's ACLs (or the embedded log's file modes) decide who may append to the events topic,
and transactions fence a zombie worker; neither tells a *reader* who wrote a record.  A
process allowed to produce to the topic can append a record that decodes as a run's event,
carries the right ``prev`` hash and looks like a worker's.  So every event a worker appends
carries, in its ``wl-mac`` header, an HMAC-SHA256 over the record's partition, key and value
under the fleet's *record key*, a secret shared by the workers and by whoever verifies.  The
event's ``writer`` field (the worker's id) is inside the signed value.

A reader holding the key (the worker folding a journal, ``audit verify``, the projections)
treats a record whose header is missing or does not match as untrusted: it is skipped, with a
notice naming its offset, and never resumes a run or resolves a gate.

Where the key comes from (:func:`signer_for`, which workers and clients use by default):

* ``$WAKELINE_RECORD_KEY_FILE``, a file of at least 32 bytes (required to sign on Kafka);
* else the log's own :attr:`~wakeline.topics.port.Log.key_file`: for the embedded log
  ``<data dir>/record.key``, made (mode 0600) with a new log.

Without either, nothing is signed or checked.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from wakeline.topics.port import Log, Record

HEADER = "wl-mac"
KEY_ENV = "WAKELINE_RECORD_KEY_FILE"
KEY_FILE = "record.key"
MIN_KEY_BYTES = 32
_DOMAIN = b"wakeline-record-v1\x00"


class UntrustedRecordError(Exception):
    """A record without a valid signature from a holder of the record key."""


class RecordSigner:
    """Signs and checks records with one secret key (HMAC-SHA256)."""

    __slots__ = ("_keyed",)

    def __init__(self, key: bytes) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"a record key needs at least {MIN_KEY_BYTES} bytes")
        self._keyed = hmac.new(key, _DOMAIN, hashlib.sha256)  # copied per record: keyed once

    def sign(self, partition: int, key: bytes | None, value: bytes) -> bytes:
        """The ``wl-mac`` header value (hex ASCII) of a record to append to ``partition``."""
        mac = self._keyed.copy()
        mac.update(partition.to_bytes(4, "big"))
        mac.update(len(key or b"").to_bytes(4, "big"))
        mac.update(key or b"")
        mac.update(value)
        return mac.hexdigest().encode()

    def problem(self, record: Record) -> str | None:
        """Why ``record`` is not trusted, or ``None`` if a holder of the key wrote it."""
        given = [v for k, v in record.headers if k == HEADER]
        if not given:
            return "unsigned: not appended by a worker holding the record key"
        expected = self.sign(record.partition, record.key, record.value)
        if len(given) != 1 or not hmac.compare_digest(given[0], expected):
            return "bad signature: not appended by a worker holding the record key"
        return None

    def check(self, record: Record) -> None:
        """Raise :class:`UntrustedRecordError` unless ``record`` is trusted."""
        problem = self.problem(record)
        if problem is not None:
            raise UntrustedRecordError(problem)

    @classmethod
    def from_file(cls, path: Path) -> RecordSigner:
        try:
            return cls(path.read_bytes().strip())
        except OSError as exc:
            raise ValueError(f"cannot read the record key {path}: {exc}") from exc
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None


def signer_for(log: Log) -> RecordSigner | None:
    """The fleet's record key for ``log``: ``$WAKELINE_RECORD_KEY_FILE``, else the log's own
    key file; ``None`` (records neither signed nor checked) without either."""
    configured = os.environ.get(KEY_ENV)
    if configured:
        return RecordSigner.from_file(Path(configured))
    return None if log.key_file is None else RecordSigner.from_file(log.key_file)


def create_key_file(path: Path) -> None:
    """Write a fresh random key to ``path`` (mode 0600) unless one is there already; safe
    when several processes race to create it (the first complete file wins)."""
    if path.exists():
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(secrets.token_hex(MIN_KEY_BYTES).encode())
            out.flush()
            os.fsync(out.fileno())
        with contextlib.suppress(FileExistsError):  # another process got there first
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
