"""A worker's side outputs: dead-letter records and notices.

Neither is part of a run's journal.  A dead letter keeps a bad command's bytes with the reason
it was refused (headers ``wakeline.reason``, ``wakeline.source`` = ``topic/partition/offset``,
``wakeline.worker``); a notice tells a run's watchers what happened outside its journal
(drift, a rejected command, a resume).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from wakeline.schemas.codec import notice_codec
from wakeline.schemas.commands import Notice, NoticePayload
from wakeline.telemetry.runtime import Telemetry
from wakeline.topics.port import Log, OutRecord, Record
from wakeline.topics.specs import Topics

log = logging.getLogger(__name__)


class SideOutputs:
    def __init__(
        self,
        log: Log,
        topics: Topics,
        worker_id: str,
        telemetry: Telemetry,
        now_ms: Callable[[], int],
    ) -> None:
        self._log = log
        self._topics = topics
        self._worker_id = worker_id
        self._telemetry = telemetry
        self._now_ms = now_ms

    async def dead_letter(self, record: Record, reason: str) -> None:
        log.warning(
            "dead letter from %s/%s@%s: %s", record.topic, record.partition, record.offset, reason
        )
        headers = (
            ("wakeline.reason", reason.encode()),
            ("wakeline.source", f"{record.topic}/{record.partition}/{record.offset}".encode()),
            ("wakeline.worker", self._worker_id.encode()),
        )
        await self._log.append(
            self._topics.deadletter, [OutRecord(record.key, record.value, headers)]
        )
        self._telemetry.dead_letter(self._topics.deadletter, reason)

    async def notice(self, run_id: str, payload: NoticePayload) -> None:
        notice = Notice(run_id, self._now_ms(), self._worker_id, payload)
        value = notice_codec().encode(notice)
        await self._log.append(self._topics.notices, [OutRecord(run_id.encode(), value)])
