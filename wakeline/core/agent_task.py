"""The agent's coroutines, run on the run's :class:`DeterministicLoop`.

The core owns one :class:`AgentTask`.  It starts the agent's main coroutine, hands out the
futures its ``ctx`` calls wait on, resolves them as results are delivered, and runs the loop
until every task waits again.  When the main coroutine returns or raises, or a background task
the agent started fails without anyone awaiting it, the run ends with a terminal event.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Protocol, cast

from pydantic import ValidationError

from wakeline import jsonutil
from wakeline.core.app import AgentSpec
from wakeline.core.context import Context
from wakeline.core.errors import StopRun
from wakeline.core.loop import DeterministicLoop
from wakeline.core.port import ContextPort
from wakeline.core.sessions import load_session
from wakeline.schemas.events import EventPayload, RunCompleted, RunFailed, RunStarted, Session

if TYPE_CHECKING:
    from wakeline.core.app import App


class TaskPort(ContextPort, Protocol):
    """What the agent task needs from its core, beyond what a Context needs."""

    @property
    def finished(self) -> bool: ...

    def emit_terminal(self, payload: EventPayload) -> None: ...


class AgentTask:
    def __init__(self, port: TaskPort) -> None:
        self._port = port
        self._loop = DeterministicLoop()  # type: ignore[abstract]  # only what tasks need
        self._futures: dict[int, asyncio.Future[Any]] = {}
        self._main: asyncio.Task[Any] | None = None
        self._spec: AgentSpec | None = None
        self._failure: tuple[str, str] | None = None
        self._ended = False
        self.closed = False
        """Set by :meth:`close`: agent code may produce nothing any more."""

    def begin(self, started: RunStarted, version: str) -> None:
        """Validate the input and run version ``version`` of the agent to its first wait (or
        its end)."""
        app: App = self._port.app
        spec = app.get_agent(started.agent, version)
        if spec is None:
            known = ", ".join(sorted(app.agents)) or "none"
            shown = f" version {version!r}" if version else ""
            self.end_failed(
                "UnknownAgent",
                f"no agent {started.agent!r}{shown} is registered (known: {known})",
            )
            return
        try:
            value = spec.input_adapter.validate_json(started.input)
        except ValidationError as exc:
            self.end_failed("InvalidInput", f"input does not match {spec.name!r}: {_explain(exc)}")
            return
        self._spec = spec
        ctx = Context(self._port, spec)
        coro = cast(Coroutine[Any, Any, Any], spec.fn(ctx, value))
        if started.session is not None:  # its history is read first, as step 1
            coro = _in_session(ctx, started.session, coro)
        self._main = self._loop.create_task(coro, name=f"agent:{self._port.run_id}")
        self._run()

    def wait(self, seq: int) -> asyncio.Future[Any]:
        fut = self._loop.create_future()
        self._futures[seq] = fut
        return fut

    def resume(self, seq: int, result: Any) -> bool:
        """Deliver a step's result to the code waiting for it (False: nothing waits)."""
        fut = self._futures.pop(seq, None)
        if fut is None:
            return False
        fut.set_result(result)
        self._run()
        return True

    def fail_run(self, error_type: str, message: str) -> BaseException:
        """Make the run fail (policy denials): returns the exception to raise in agent code."""
        if self._failure is None:
            self._failure = (error_type, message)
        return StopRun()

    def end_failed(self, error_type: str, message: str) -> None:
        self._end(RunFailed(error_type=error_type, message=message))

    def stop(self) -> None:
        self._main = None
        self._futures.clear()

    def close(self) -> None:
        """The core is dropped: cancel what agent code still has suspended and run its loop
        until idle, so its clean-up (``finally``, context managers, context-variable resets)
        runs now, on its own loop and in its own context -- not later, wherever the garbage
        collector happens to close the coroutines.  Nothing it does then is journaled."""
        self.stop()
        self._ended = self.closed = True
        for task in asyncio.all_tasks(self._loop):
            task.cancel()
        self._loop.run_until_idle()
        self._loop.take_errors()
        self._loop.close()

    def _run(self) -> None:
        self._loop.run_until_idle()
        errors = [e for e in self._loop.take_errors() if not isinstance(e, StopRun)]
        main = self._main
        if main is None or self._ended or self._port.finished:
            return
        exc = main.exception() if main.done() and not main.cancelled() else None
        if errors and exc is None:  # a task the agent started failed and nothing awaited it
            self.end_failed(type(errors[0]).__name__, f"in a background task: {errors[0]}")
        elif main.done():
            self._finish(main, exc)

    def _finish(self, main: asyncio.Task[Any], exc: BaseException | None) -> None:
        if isinstance(exc, StopRun):
            if self._failure is not None:
                self.end_failed(*self._failure)
            return
        if exc is not None:
            self.end_failed(type(exc).__name__, str(exc))
            return
        assert self._spec is not None
        try:
            output = self._spec.output_adapter.dump_python(main.result(), mode="json")
            text = jsonutil.dumps(output)
        except Exception as err:  # the agent returned something its type cannot serialize
            self.end_failed("InvalidOutput", f"output does not match {self._spec.name!r}: {err}")
            return
        self._end(RunCompleted(output=text))

    def _end(self, payload: EventPayload) -> None:
        if self.closed:
            return
        self._ended = True
        self._port.emit_terminal(payload)


async def _in_session(ctx: Context, session: Session, coro: Coroutine[Any, Any, Any]) -> Any:
    try:
        ctx._session = await load_session(ctx, session)
    except BaseException:
        coro.close()
        raise
    return await coro


def _explain(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"]) or "input"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)
