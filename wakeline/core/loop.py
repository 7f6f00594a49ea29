"""A deterministic asyncio event loop for agent code.

Agent coroutines run on this loop, never on the worker's real one.  It has no clock, no
sockets and no threads: it only runs ready callbacks, in FIFO order, until none is left
(:meth:`DeterministicLoop.run_until_idle`).  Given the same sequence of resolved futures it
therefore runs the same callbacks in the same order, which is what makes replay exact --
including ``asyncio.gather`` over several model calls.  Anything that would need real time
(``asyncio.sleep(x > 0)``, timeouts) raises :class:`NonDeterministicCallError`: agents use
``ctx.sleep`` instead, which is a durable timer.

While agent code runs this loop is the running loop, so anything that asks for the running
loop gets it -- including a finalizer the garbage collector happens to run then: a library's
abandoned coroutine whose ``finally`` schedules clean-up would land a foreign, failing task in
the run (a Kafka reader released by the collector did: the run failed "in a background task:
Event loop is closed").  :meth:`run_until_idle` therefore holds automatic collection off
while it runs; the collector runs later, on the worker's own loop.  For the same reason
async generators first iterated by agent code belong to this loop (its asyncgen hooks are
installed while it runs): the worker's loop never finalizes them at its own shutdown, where
their clean-up (say, an anyio cancel scope of an agent task) could never complete.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import gc
import sys
import weakref
from collections.abc import Callable, Coroutine, Generator
from typing import Any, TypeVar, TypeVarTuple, Unpack

T = TypeVar("T")
Ts = TypeVarTuple("Ts")


class NonDeterministicCallError(RuntimeError):
    """Agent code used an asyncio feature that depends on real time or I/O."""


class DeterministicLoop(asyncio.AbstractEventLoop):
    def __init__(self) -> None:
        self._ready: collections.deque[
            tuple[asyncio.Handle, Callable[..., object], tuple[object, ...], contextvars.Context]
        ] = collections.deque()
        self._errors: list[BaseException] = []
        self._closed = False
        self._asyncgens: weakref.WeakSet[Any] = weakref.WeakSet()

    # -- what asyncio.Future / Task / gather need ------------------------------------------
    def call_soon(
        self,
        callback: Callable[[Unpack[Ts]], object],
        *args: *Ts,
        context: contextvars.Context | None = None,
    ) -> asyncio.Handle:
        ctx = context if context is not None else contextvars.copy_context()
        handle = asyncio.Handle(callback, args, self, ctx)
        self._ready.append((handle, callback, args, ctx))
        return handle

    def create_future(self) -> asyncio.Future[Any]:
        return asyncio.Future(loop=self)

    def create_task(
        self,
        coro: Coroutine[Any, Any, T] | Generator[Any, None, T],
        *,
        name: str | None = None,
        context: contextvars.Context | None = None,
    ) -> asyncio.Task[T]:
        return asyncio.Task(coro, loop=self, name=name, context=context)

    def get_debug(self) -> bool:
        return False

    def get_task_factory(self) -> None:  # anyio (pydantic-ai's task groups) asks for it
        return None

    def is_running(self) -> bool:
        return True

    def run_in_executor(
        self, executor: object, func: Callable[[Unpack[Ts]], T], *args: *Ts
    ) -> asyncio.Future[T]:
        """Run ``func`` now, inline: agent code has no threads, and a sync function it hands
        an executor (``asyncio.to_thread``, a framework's sync node) is the same as one it
        calls.  Blocking I/O here blocks the worker: it belongs in ``ctx.step``."""
        future: asyncio.Future[T] = self.create_future()
        try:
            future.set_result(func(*args))
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:  # delivered to the awaiting code, as an executor would
            future.set_exception(exc)
        return future

    def is_closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        self._closed = True
        self._ready.clear()

    def time(self) -> float:
        return 0.0

    def call_exception_handler(self, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if isinstance(exc, BaseException):
            self._errors.append(exc)

    def default_exception_handler(self, context: dict[str, Any]) -> None:
        self.call_exception_handler(context)

    # -- forbidden: these depend on wall-clock time ----------------------------------------
    def call_later(
        self,
        delay: float,
        callback: Callable[[Unpack[Ts]], object],
        *args: *Ts,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        raise NonDeterministicCallError(
            "agent code may not use asyncio timers (asyncio.sleep, wait_for, timeout); "
            "use `await ctx.sleep(seconds)`, a durable timer"
        )

    def call_at(
        self,
        when: float,
        callback: Callable[[Unpack[Ts]], object],
        *args: *Ts,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        return self.call_later(when, callback, *args)

    # -- driving ---------------------------------------------------------------------------
    def run_until_idle(self) -> None:
        """Run ready callbacks until none is left.  Never blocks."""
        outer = asyncio._get_running_loop()
        collecting = gc.isenabled()
        gc.disable()  # no foreign finalizer runs as agent code (see the module's docstring)
        hooks = sys.get_asyncgen_hooks()
        sys.set_asyncgen_hooks(self._asyncgens.add, self._finalize_asyncgen)
        asyncio._set_running_loop(self)
        try:
            while self._ready:
                handle, callback, args, ctx = self._ready.popleft()
                if not handle.cancelled():
                    ctx.run(callback, *args)
        finally:
            asyncio._set_running_loop(outer)
            sys.set_asyncgen_hooks(*hooks)
            if collecting:
                gc.enable()

    def _finalize_asyncgen(self, agen: Any) -> None:
        """An agent's async generator was dropped unfinished: close it on this loop, the next
        time the run's code runs (never, if the run is over)."""
        self._asyncgens.discard(agen)
        if not self._closed:
            self.create_task(agen.aclose())

    def take_errors(self) -> list[BaseException]:
        errors, self._errors = self._errors, []
        return errors
