"""A test seam on any object: count the calls of one of its methods and wait for the next ones.

``calls = observe_calls(worker.ledger, "catch_up")`` replaces the method on that one instance
by a wrapper that calls it, then counts the call as done; ``await calls.until(condition)``
checks ``condition`` now and again after each call, instead of polling it with sleeps.
``calls.close()`` (or leaving ``with observe_calls(...)``) puts the method back.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

from wakeline.testing.waits import DEFAULT_TIMEOUT_S


class Calls:
    """Completed calls of an observed method (see :func:`observe_calls`)."""

    def __init__(self, owner: Any, name: str) -> None:
        self.owner, self.name = owner, name
        self.count = 0
        """How many calls returned (or raised) so far."""
        self._changed = asyncio.Event()

    def _done(self) -> None:
        self.count += 1
        self._changed.set()

    async def after(self, count: int, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        """Return once more than ``count`` calls completed."""
        await self.until(lambda: self.count > count, timeout_s=timeout_s)

    async def until(
        self, condition: Callable[[], bool], *, timeout_s: float = DEFAULT_TIMEOUT_S, what: str = ""
    ) -> None:
        """Return once ``condition()`` holds: checked now and after every call."""
        try:
            async with asyncio.timeout(timeout_s):
                while not condition():
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            label = what or getattr(condition, "__name__", "the condition")
            raise AssertionError(
                f"{label} did not hold within {timeout_s}s "
                f"({self.count} calls of {type(self.owner).__name__}.{self.name})"
            ) from None

    def close(self) -> None:
        """Put the original method back."""
        self.owner.__dict__.pop(self.name, None)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def observe_calls(owner: Any, name: str) -> Calls:
    """Count the calls of ``owner.name`` (a sync or async method of that instance)."""
    inner = getattr(owner, name)
    calls = Calls(owner, name)
    if inspect.iscoroutinefunction(inner):

        @functools.wraps(inner)
        async def wrapped_async(*args: Any, **kwargs: Any) -> Any:
            try:
                return await inner(*args, **kwargs)
            finally:
                calls._done()

        setattr(owner, name, wrapped_async)
    else:

        @functools.wraps(inner)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            try:
                return inner(*args, **kwargs)
            finally:
                calls._done()

        setattr(owner, name, wrapped)
    return calls
