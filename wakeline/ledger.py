"""Shared budgets (per tenant, per agent), across workers and partitions.

Each budget has a ledger key (:func:`ledger_key`: ``tenant:<name>`` or ``agent:<name>``; the
records' ``tenant`` field holds it).  Its ledger is a partition of ``wakeline.ledger`` holding
``Reserve``, ``Settle`` and ``SetLimit`` records.  Its state is the fold of that partition in
offset order, and so is every decision: a ``Reserve`` is granted iff, at its offset, the tenant's
spend plus the reservations granted and not yet settled plus this one fit the limit.  The log's
order is the only serialization point: any worker reaches the same decision for the same record
by folding the partition up to it, with no ledger owner, lock or leader.

Worst-case overshoot: none, as long as each reservation is a true upper bound of its call's cost
(input tokens are bounded by the UTF-8 byte length of the prompt, output by ``max_tokens``) and
the price table is right.  A reservation whose run dies before it settles stays reserved until
the resumed run re-sends the call (same request id: the grant is reused) and settles it; a run
cancelled with a call in flight leaves it reserved (documented in docs/governance.md).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from decimal import Decimal

from wakeline.schemas.ledger import (
    LedgerPayload,
    LedgerRecord,
    Reserve,
    SetLimit,
    Settle,
    ledger_codec,
)
from wakeline.topics.partitioner import partition_for
from wakeline.topics.port import Log, OutRecord, Record


def ledger_key(scope: str, name: str) -> str:
    """The ledger key of a shared budget: ``tenant:<tenant>`` or ``agent:<agent>``."""
    return f"{scope}:{name}"


@dataclass(frozen=True, slots=True)
class Decision:
    request_id: str
    granted: bool
    limit: Decimal | None
    committed: Decimal
    """Spend plus the other reservations in force when the request was decided."""
    amount: Decimal | None


@dataclass(slots=True)
class TenantState:
    limit: Decimal | None = None
    spent: Decimal = Decimal(0)
    active: dict[str, Decimal] = field(default_factory=dict)
    granted: set[str] = field(default_factory=set)

    @property
    def committed(self) -> Decimal:
        return self.spent + sum(self.active.values(), Decimal(0))

    def apply(self, payload: LedgerPayload) -> Decision | None:
        if isinstance(payload, SetLimit):
            self.limit = Decimal(payload.usd) if payload.usd else None
            return None
        if isinstance(payload, Settle):
            if self.active.pop(payload.request_id, None) is not None:
                self.spent += Decimal(payload.usd)
            return None
        amount = None if payload.usd == "unpriced" else Decimal(payload.usd)
        committed = self.committed - self.active.get(payload.request_id, Decimal(0))
        if payload.request_id in self.granted:  # the same call sent again after a crash
            return Decision(payload.request_id, True, self.limit, committed, amount)
        fits = self.limit is None or (amount is not None and committed + amount <= self.limit)
        if fits:
            self.granted.add(payload.request_id)
            self.active[payload.request_id] = amount or Decimal(0)
        return Decision(payload.request_id, fits, self.limit, committed, amount)


class Ledger:
    """Folds the ledger topic and asks it for decisions."""

    def __init__(self, log: Log, topic: str, *, writer: str = "") -> None:
        self._log = log
        self._topic = topic
        self._writer = writer
        self.tenants: dict[str, TenantState] = {}
        self._positions: dict[int, int] = {}
        self._decided: dict[tuple[int, int], Decision] = {}
        self._locks: dict[int, asyncio.Lock] = {}
        self.limit_changes: asyncio.Queue[tuple[str, SetLimit]] = asyncio.Queue()

    async def _append(self, tenant: str, payload: LedgerPayload) -> tuple[int, int]:
        record = LedgerRecord(tenant, int(time.time() * 1000), self._writer, payload)
        out = OutRecord(tenant.encode(), ledger_codec().encode(record))
        [(partition, offset)] = await self._log.append(self._topic, [out])
        return partition, offset

    def has_limit(self, key: str) -> bool:
        """Whether the fold so far saw a limit for ``key``."""
        state = self.tenants.get(key)
        return state is not None and state.limit is not None

    async def reserve(
        self, tenant: str, request_id: str, run_id: str, usd: Decimal | None
    ) -> Decision:
        amount = "unpriced" if usd is None else str(usd)
        partition, offset = await self._append(tenant, Reserve(request_id, run_id, amount))
        await self.catch_up(partition, through=offset)
        return self._decided.pop((partition, offset))

    async def settle(self, tenant: str, request_id: str, usd: Decimal) -> None:
        await self._append(tenant, Settle(request_id, str(usd)))

    async def set_limit(self, tenant: str, usd: Decimal | None, by: str = "") -> None:
        await self._append(tenant, SetLimit("" if usd is None else str(usd), by))

    async def state(self, tenant: str) -> TenantState:
        partitions = await self._log.partition_count(self._topic)
        partition = partition_for(tenant.encode(), partitions)
        await self.catch_up(partition)
        return self.tenants.setdefault(tenant, TenantState())

    async def catch_up(self, partition: int, *, through: int | None = None) -> None:
        """Fold ``partition`` up to ``through`` (inclusive), or to its end."""
        lock = self._locks.setdefault(partition, asyncio.Lock())
        async with lock:
            end = await self._log.end_offset(self._topic, partition) if through is None else None
            position = self._positions.get(partition, 0)
            while (through is not None and position <= through) or (
                end is not None and position < end
            ):
                records = await self._log.read(
                    self._topic, partition, position, max_records=1000, timeout_s=1.0
                )
                for record in records:
                    self._fold(record)
                if records:
                    position = records[-1].offset + 1
                    self._positions[partition] = position

    def _fold(self, record: Record) -> None:
        entry = ledger_codec().decode(record.value)
        state = self.tenants.setdefault(entry.tenant, TenantState())
        decision = state.apply(entry.payload)
        if isinstance(entry.payload, SetLimit):
            self.limit_changes.put_nowait((entry.tenant, entry.payload))
        if decision is not None and entry.writer == self._writer:
            self._decided[(record.partition, record.offset)] = decision
