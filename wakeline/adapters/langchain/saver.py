"""``WakelineSaver``: a LangGraph checkpoint saver whose threads are wakeline sessions.

    graph = builder.compile(checkpointer=WakelineSaver())

    @app.agent
    async def chat(ctx, text: str) -> str:       # started with session="s-1"
        state = await ainvoke(ctx, graph, {"messages": [("user", text)]})
        ...

Inside a run that is a turn of session ``S`` (:mod:`wakeline.sessions`), the thread ``S`` (what
:func:`~wakeline.adapters.langchain.graphs.ainvoke` passes as ``thread_id``; or pass it
yourself inside ``durable(ctx)``) starts from the checkpoint its previous turn left, and each
checkpoint and pending write LangGraph saves makes the thread's latest checkpoint the
session's item ``langgraph/<checkpoint_ns>`` (a journaled step, ``session.put_item``), which
the next turn starts from.  Every run works on a private in-memory saver (LangGraph's own),
seeded from the session at the run's start: a run re-run from its journal (a crash, an unload)
rebuilds it the same way.  Other threads, and runs that are not turns, keep their checkpoints
for the run only; outside a wakeline run it is an in-memory saver.  Only the async API is
journaled (LangGraph's ``ainvoke`` / ``astream``).
"""

from __future__ import annotations

import base64
import builtins
import weakref
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
)
from langgraph.checkpoint.memory import InMemorySaver

from wakeline.adapters.langchain.model import current_run
from wakeline.core.context import Context

PREFIX = "langgraph/"


class WakelineSaver(BaseCheckpointSaver[str]):
    """A LangGraph checkpointer backed by wakeline sessions (see the module)."""

    def __init__(self) -> None:
        super().__init__()
        self._outside = InMemorySaver(serde=self.serde)
        self._runs: weakref.WeakKeyDictionary[Context, InMemorySaver] = weakref.WeakKeyDictionary()

    def _saver(self) -> InMemorySaver:
        """The run's own saver (seeded from its session on first use), else the outside one."""
        ctx = current_run.get()
        if ctx is None:
            return self._outside
        saver = self._runs.get(ctx)
        if saver is None:
            saver = self._runs[ctx] = InMemorySaver(serde=self.serde)
            if ctx.in_session:
                for item in ctx.session.items:
                    key = item.get("wakeline.key") if isinstance(item, dict) else None
                    if isinstance(key, str) and key.startswith(PREFIX) and item["value"]:
                        self._restore(saver, ctx.session.id, key[len(PREFIX) :], item["value"])
        return saver

    # -- the async API LangGraph calls in a run ----------------------------------------------
    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return self._saver().get_tuple(config)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        for found in self._saver().list(config, filter=filter, before=before, limit=limit):
            yield found

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        saved = self._saver().put(config, checkpoint, metadata, new_versions)
        await self._persist(config)
        return saved

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        self._saver().put_writes(config, writes, task_id, task_path)
        await self._persist(config)

    async def adelete_thread(self, thread_id: str) -> None:
        saver = self._saver()
        namespaces = list(saver.storage.get(thread_id, {}))
        saver.delete_thread(thread_id)
        ctx = current_run.get()
        if ctx is not None and ctx.in_session and thread_id == ctx.session.id:
            for ns in namespaces:
                await ctx.session.put_item(PREFIX + ns, None)

    def get_next_version(self, current: str | None, channel: None) -> str:
        return self._outside.get_next_version(current, channel)

    # -- the sync API: outside a run only ------------------------------------------------------
    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return self._sync().get_tuple(config)

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        return self._sync().list(config, filter=filter, before=before, limit=limit)

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        return self._sync().put(config, checkpoint, metadata, new_versions)

    def put_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        self._sync().put_writes(config, writes, task_id, task_path)

    def _sync(self) -> InMemorySaver:
        if current_run.get() is not None:
            raise RuntimeError(
                "inside a wakeline run use LangGraph's async API (ainvoke / astream): "
                "only its checkpoints are journaled"
            )
        return self._outside

    # -- the session's item ------------------------------------------------------------------
    async def _persist(self, config: RunnableConfig) -> None:
        """Make the thread's latest checkpoint the session's item, if the thread is the
        session of the run."""
        ctx = current_run.get()
        conf = config.get("configurable", {})
        thread, ns = conf.get("thread_id"), conf.get("checkpoint_ns", "")
        if ctx is None or not ctx.in_session or thread != ctx.session.id:
            return
        latest = self._saver().get_tuple(
            {"configurable": {"thread_id": thread, "checkpoint_ns": ns}}
        )
        if latest is not None:
            await ctx.session.put_item(PREFIX + ns, self._encode(latest))

    def _typed(self, value: Any) -> builtins.list[str]:
        kind, data = self.serde.dumps_typed(value)
        return [kind, base64.b64encode(data).decode()]

    def _untyped(self, value: builtins.list[str]) -> Any:
        return self.serde.loads_typed((value[0], base64.b64decode(value[1])))

    def _encode(self, found: CheckpointTuple) -> dict[str, Any]:
        return {
            "checkpoint": self._typed(found.checkpoint),
            "metadata": self._typed(found.metadata),
            "writes": [[t, c, self._typed(v)] for t, c, v in found.pending_writes or ()],
        }

    def _restore(self, saver: InMemorySaver, thread: str, ns: str, value: Any) -> None:
        checkpoint: Checkpoint = self._untyped(value["checkpoint"])
        config: RunnableConfig = {"configurable": {"thread_id": thread, "checkpoint_ns": ns}}
        versions = dict(checkpoint["channel_versions"])
        saved = saver.put(config, checkpoint, self._untyped(value["metadata"]), versions)
        for task, channel, typed in value["writes"]:
            saver.put_writes(saved, [(channel, self._untyped(typed))], task)
