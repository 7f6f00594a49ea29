"""Pieces every CLI command module shares: settings, running coroutines, clients, views."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import click

from wakeline.client import Client
from wakeline.projections.views import Views
from wakeline.runtime import StateDir, TargetError, data_dir, ensure_topics, load_target, open_log
from wakeline.topics.port import Log, LogError, UnknownTopicError
from wakeline.topics.specs import DEFAULT_TOPICS, prefixed_topics

T = TypeVar("T")


class Settings:
    """The global options: where the log is, and which topics on it."""

    def __init__(
        self, data: str | None, kafka: str | None, topic_prefix: str | None = None
    ) -> None:
        self.data = data_dir(data)
        self.kafka = kafka
        self.topics = prefixed_topics(topic_prefix) if topic_prefix else DEFAULT_TOPICS

    async def log(self) -> Log:
        return await open_log(data=self.data, kafka=self.kafka)

    def client(self, log: Log, **options: Any) -> Client:
        """A client of this log on these topics (``options`` go to :class:`Client`)."""
        return Client(log, topics=self.topics, **options)

    async def ensure_topics(self, log: Log, **options: Any) -> None:
        await ensure_topics(log, topics=self.topics, **options)


def run_async(coro_fn: Callable[[], Awaitable[T]]) -> T:
    async def wrapper() -> T:
        return await coro_fn()

    try:
        return asyncio.run(wrapper())
    except UnknownTopicError as exc:
        raise click.ClickException(f"{exc}; run `wakeline topics create`") from exc
    except LogError as exc:
        raise click.ClickException(f"log error: {exc}") from exc


def json_input(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"--input is not valid JSON: {exc}") from exc


def target_app(target: str) -> tuple[Any, str | None]:
    try:
        return load_target(target)
    except TargetError as exc:
        raise click.UsageError(str(exc)) from exc


def send(settings: Settings, action: Callable[[Client], Awaitable[None]]) -> None:
    async def go() -> None:
        log = await settings.log()
        try:
            await action(settings.client(log, issuer="cli"))
        finally:
            await log.close()

    run_async(go)


def query(settings: Settings, ask: Callable[[Client], Awaitable[T]]) -> T:
    """``ask`` a client whose views live in this machine's state directory (caught up with the
    log at each query)."""

    async def go() -> T:
        log = await settings.log()
        try:
            if settings.kafka is None:
                await settings.ensure_topics(
                    log
                )  # an empty embedded data dir is a log with no runs
            async with settings.client(log, views_dir=settings.data / "state") as client:
                return await ask(client)
        finally:
            await log.close()

    return run_async(go)


async def open_views(settings: Settings) -> tuple[Log, Views, StateDir]:
    log = await settings.log()
    if settings.kafka is None:
        await settings.ensure_topics(log)  # an empty embedded data dir is simply a log with no runs
    slot = StateDir(settings.data / "state", prefix="views")
    views = Views(log, slot.path, topics=settings.topics)
    await views.refresh()
    return log, views, slot


@asynccontextmanager
async def views_open(settings: Settings) -> AsyncIterator[Views]:
    """The caught-up query views of this machine, closed afterwards."""
    log, views, slot = await open_views(settings)
    try:
        yield views
    finally:
        views.close()
        slot.release()
        await log.close()
