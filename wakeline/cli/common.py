"""Pieces every CLI command module shares: settings, running coroutines, clients, views."""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import click

from wakeline.client import Client
from wakeline.projections.views import Views
from wakeline.runtime import TargetError, data_dir, load_target
from wakeline.topics.port import LogError, UnknownTopicError
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

    @asynccontextmanager
    async def connect(self, **options: Any) -> AsyncIterator[Client]:
        """A client on its own log (closed afterwards); ``options`` go to :meth:`Client.open`."""
        client = await Client.open(data=self.data, kafka=self.kafka, topics=self.topics, **options)
        async with client:
            yield client

    @asynccontextmanager
    async def querying(self, **options: Any) -> AsyncIterator[Client]:
        """A client whose views live in this machine's state directory (caught up with the
        log at each query).  An empty embedded data dir is simply a log with no runs."""
        async with self.connect(views_dir=self.data / "state", **options) as client:
            if self.kafka is None:
                await client.create_topics()
            yield client


def cli_issuer() -> str:
    """Who the CLI's commands come from: the operating-system user (by uid, not by the
    environment) at this host, recorded in each command and in what it causes (an approval's
    ``by``)."""
    return f"{pwd.getpwuid(os.getuid()).pw_name}@{socket.gethostname()}"


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
        async with settings.connect(issuer=cli_issuer()) as client:
            await action(client)

    run_async(go)


def query(settings: Settings, ask: Callable[[Client], Awaitable[T]]) -> T:
    """``ask`` a client whose views live in this machine's state directory."""

    async def go() -> T:
        async with settings.querying() as client:
            return await ask(client)

    return run_async(go)


def with_views(settings: Settings, use: Callable[[Views], Awaitable[T]]) -> T:
    """``use`` the caught-up query views of this machine."""

    async def go() -> T:
        async with views_open(settings) as views:
            return await use(views)

    return run_async(go)


@asynccontextmanager
async def views_open(settings: Settings) -> AsyncIterator[Views]:
    """The caught-up query views of this machine, closed afterwards."""
    async with settings.querying() as client:
        yield await client.views()
