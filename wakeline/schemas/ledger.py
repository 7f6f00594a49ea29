"""The ledger topic's records (``ledger.avsc``): Python mirrors and their codec."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from wakeline.schemas.codec import Codec, load_schema


@dataclass(frozen=True, slots=True)
class Reserve:
    request_id: str
    run_id: str
    usd: str


@dataclass(frozen=True, slots=True)
class Settle:
    request_id: str
    usd: str


@dataclass(frozen=True, slots=True)
class SetLimit:
    usd: str
    by: str = ""


LedgerPayload = Reserve | Settle | SetLimit


@dataclass(frozen=True, slots=True)
class LedgerRecord:
    tenant: str
    time_ms: int
    writer: str
    payload: LedgerPayload


@cache
def ledger_codec() -> Codec[LedgerRecord]:
    return Codec(load_schema("ledger.avsc"), LedgerRecord, (Reserve, Settle, SetLimit))
