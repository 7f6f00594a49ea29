"""Wiring shared by the CLI, the examples and tests: data dirs, logs, apps."""

from __future__ import annotations

import fcntl
import importlib
import importlib.util
import os
import socket
import sys
import uuid
from pathlib import Path
from types import ModuleType
from typing import IO

from wakeline.core.app import App
from wakeline.fsutil import private_dir
from wakeline.topics.port import Log
from wakeline.topics.specs import DEFAULT_TOPICS, Topics

DEFAULT_PARTITIONS = 4


def data_dir(path: str | Path | None = None) -> Path:
    """``path``, else ``$WAKELINE_DATA``, else ``./.wakeline``."""
    return Path(path or os.environ.get("WAKELINE_DATA") or ".wakeline")


async def open_log(
    *, data: str | Path | None = None, kafka: str | None = None, topics: Topics = DEFAULT_TOPICS
) -> Log:
    """The Kafka backend when a bootstrap address is given, else the embedded log; records
    too large for one record go to ``topics.chunks`` (:mod:`wakeline.topics.chunked`)."""
    from wakeline.topics.chunked import ChunkedLog

    inner: Log
    if kafka:
        from wakeline.topics.kafka.log import KafkaLog

        inner = await KafkaLog.open(kafka)
    else:
        from wakeline.topics.embedded.log import EmbeddedLog

        inner = await EmbeddedLog.open(data_dir(data))
    return ChunkedLog(inner, topics.chunks)


async def ensure_topics(
    log: Log,
    *,
    partitions: int = DEFAULT_PARTITIONS,
    replication: int = 1,
    topics: Topics = DEFAULT_TOPICS,
) -> None:
    await log.create_topics(topics.specs(partitions, replication))


class StateDir:
    """A per-process state directory under ``base``, held with an exclusive file lock.

    Workers keep a RocksDB journal store here; a restarted worker reuses a free slot, so it
    catches up incrementally instead of refolding everything.
    """

    def __init__(self, base: Path, prefix: str = "worker") -> None:
        self._lock: IO[str] | None = None
        for slot in range(1024):
            path = base / f"{prefix}-{slot}"
            private_dir(path)
            handle = (path / "LOCK.wakeline").open("w")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.close()
                continue
            self._lock = handle
            self.path = path / "journal"
            self.instance_id = _instance_id(path)
            return
        raise RuntimeError(f"no free state slot under {base}")

    def release(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None


def _instance_id(slot: Path) -> str:
    """The slot's stable member id (created once): whoever holds the slot is that member."""
    file = slot / "instance-id"
    if not file.exists():
        made = f"{socket.gethostname()}-{slot.name}-{uuid.uuid4().hex[:8]}"
        tmp = slot / "instance-id.tmp"
        tmp.write_text(made)
        tmp.replace(file)
    return file.read_text().strip()


class TargetError(Exception):
    pass


def load_target(target: str) -> tuple[App, str | None]:
    """Resolve ``MODULE[:NAME]``: the module's ``App`` and, optionally, an agent name.

    ``MODULE`` is a dotted module or a path to a ``.py`` file; ``NAME`` is an attribute holding
    an ``App``, ``factory()`` (a function returning one) or the name of one of the app's agents.
    """
    module_part, _, name = target.partition(":")
    module = import_target(module_part)
    if name.endswith("()"):
        made = getattr(module, name[:-2], None)
        app_made = made() if callable(made) else None
        if not isinstance(app_made, App):
            raise TargetError(f"{module_part}:{name} must be a function returning an App")
        return app_made, None
    if name and isinstance(getattr(module, name, None), App):
        app: App = getattr(module, name)
        return app, None
    apps = [v for v in vars(module).values() if isinstance(v, App)]
    if len(apps) != 1:
        raise TargetError(f"{module_part} must define exactly one wakeline App (found {len(apps)})")
    app = apps[0]
    if name and name not in app.agents:
        known = ", ".join(sorted(app.agents)) or "none"
        raise TargetError(f"{module_part} has no agent {name!r} (agents: {known})")
    return app, name or None


def import_target(module_part: str) -> ModuleType:
    path = Path(module_part)
    if module_part.endswith(".py") or path.is_file():
        if not path.is_file():
            raise TargetError(f"no such file: {module_part}")
        _importable(path.resolve().parent)
        name = f"wakeline_target_{path.stem}"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise TargetError(f"cannot import {module_part}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module
    _importable(Path(os.getcwd()))
    try:
        return importlib.import_module(module_part)
    except ModuleNotFoundError as exc:
        raise TargetError(f"cannot import {module_part}: {exc}") from exc


def _importable(folder: Path) -> None:
    """Let the app import the modules beside it -- after everything installed: a file there
    named like a package the worker uses (``genai_prices.py``) does not replace it."""
    if str(folder) not in sys.path:
        sys.path.append(str(folder))
