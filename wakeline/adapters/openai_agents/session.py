"""A run's SDK session (conversation memory), its reads and writes journaled as steps.

``Runner.run(agent, input, session=SQLiteSession("user-1"))`` inside a wakeline run reads and
writes the session from agent code; the session's own I/O (SQLite in a thread, Redis, a
database) cannot run there.  :class:`DurableSession` makes each operation a ``ctx.step``:
it runs once, where steps run, and its result (the items read) comes from the journal on
replay, so a replay asks the model the same question even if the session changed since.

:class:`WakelineSession` is a session kept by wakeline itself: the items of a durable session
(:mod:`wakeline.sessions`), each turn one run.
"""

from __future__ import annotations

from typing import Any, Protocol

from agents import TResponseInputItem
from agents.memory import Session, SessionSettings

from wakeline.adapters.openai_agents.model import plain
from wakeline.core.context import Context
from wakeline.core.sessions import SessionError, SessionView


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


class SessionReader(Protocol):
    """What :class:`WakelineSession` reads a session's items with outside a run (a
    :class:`wakeline.Client` with views)."""

    async def session_items(self, session_id: str) -> list[Any]: ...


class WakelineSession:
    """The SDK's ``Session`` protocol over a wakeline session: the conversation lives in the
    session's turns, one wakeline run each, not in a store of its own.

    ``WakelineSession(ctx)`` inside a turn (a run started with ``session=``): ``get_items`` are
    the items the earlier turns left (journaled at the turn's start, :mod:`wakeline.core.
    sessions`) and this turn's changes; ``add_items`` / ``pop_item`` / ``clear_session`` are
    journaled as the turn's steps, and the next turn starts with their result.  A replay reads
    it all from the turn's journal.  ``WakelineSession(client, "s-1")`` outside a run reads the
    items as the session's last turn left them (read-only)."""

    session_settings: SessionSettings | None = None

    def __init__(self, source: Context | SessionReader, session_id: str | None = None) -> None:
        self._view: SessionView | None = None
        self._reader: SessionReader | None = None
        if isinstance(source, Context):
            self._view = source.session
            if session_id is not None and session_id != self._view.id:
                raise SessionError(
                    f"run {source.run_id} is a turn of session {self._view.id}, not {session_id}"
                )
            self.session_id = self._view.id
        else:
            if session_id is None:
                raise SessionError("name the session: WakelineSession(client, session_id)")
            self._reader, self.session_id = source, session_id

    async def get_items(self, limit: int | None = None) -> list[TResponseInputItem]:
        if self._view is not None:
            items = self._view.items
        else:
            assert self._reader is not None
            items = await self._reader.session_items(self.session_id)
        if limit is not None:
            items = items[-limit:] if limit > 0 else []
        return items

    async def add_items(self, items: list[TResponseInputItem]) -> None:
        await self._turn().add_items(plain(list(items)))

    async def pop_item(self) -> TResponseInputItem | None:
        item: TResponseInputItem | None = await self._turn().pop_item()
        return item

    async def clear_session(self) -> None:
        await self._turn().clear()

    def _turn(self) -> SessionView:
        if self._view is None:
            raise SessionError(
                f"session {self.session_id} changes only inside its turns: "
                "WakelineSession(ctx) in a run started with session="
            )
        return self._view
