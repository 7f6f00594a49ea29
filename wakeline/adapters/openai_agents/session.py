"""A run's SDK session (conversation memory), its reads and writes journaled as steps.

``Runner.run(agent, input, session=SQLiteSession("user-1"))`` inside a wakeline run reads and
writes the session from agent code; the session's own I/O (SQLite in a thread, Redis, a
database) cannot run there.  :class:`DurableSession` makes each operation a ``ctx.step``:
it runs once, where steps run, and its result (the items read) comes from the journal on
replay, so a replay asks the model the same question even if the session changed since.
"""

from __future__ import annotations

from typing import Any

from agents import TResponseInputItem
from agents.memory import Session

from wakeline.adapters.openai_agents.model import plain
from wakeline.core.context import Context


class DurableSession:
    """``session``'s operations as steps of the run ``ctx`` (the SDK's ``Session`` protocol)."""

    def __init__(self, ctx: Context, session: Session) -> None:
        self._ctx = ctx
        self.inner = session
        self.session_id = session.session_id
        self.session_settings = session.session_settings

    async def get_items(self, limit: int | None = None) -> list[TResponseInputItem]:
        async def read() -> Any:
            return plain(await self.inner.get_items(limit))

        items: list[TResponseInputItem] = await self._ctx.step("session.get_items", read)
        return items

    async def add_items(self, items: list[TResponseInputItem]) -> None:
        async def write() -> None:
            await self.inner.add_items(items)

        await self._ctx.step("session.add_items", write)

    async def pop_item(self) -> TResponseInputItem | None:
        async def pop() -> Any:
            return plain(await self.inner.pop_item())

        item: TResponseInputItem | None = await self._ctx.step("session.pop_item", pop)
        return item

    async def clear_session(self) -> None:
        await self._ctx.step("session.clear_session", self.inner.clear_session)
