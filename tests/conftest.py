"""Suite-wide fixtures: a real Kafka broker (started once per session) and network guards."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from wakeline.testing.kafka_broker import KafkaBroker, start_broker

# test-only programs and agents (worker processes, golden agents) import as top-level modules
sys.path.insert(0, str(Path(__file__).parent / "support"))


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[KafkaBroker]:
    """A real Apache Kafka broker: $WAKELINE_KAFKA_BOOTSTRAP, testcontainers, or the jars.

    Never skipped: if no broker can be had, the tests that need one fail with the reason.
    """
    broker = start_broker()
    print(f"Kafka broker: how={broker.how} bootstrap={broker.bootstrap} ({broker.note})")
    yield broker
    if broker.how != "env":
        broker.stop()


_LOOPBACK = ("127.", "localhost", "::1")


@pytest.fixture(autouse=True)
def no_real_model_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests may only open connections to this machine: a real provider is never reached."""
    real = socket.getaddrinfo

    def guarded(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host)
        if not name.startswith(_LOOPBACK) and name not in {"", "0.0.0.0"}:
            raise OSError(f"test tried to reach {name}: only loopback is allowed in tests")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", guarded)
    for var in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    os.environ.setdefault("WAKELINE_TEST", "1")
