"""Worker processes of the test agents, through the one entry point
:mod:`wakeline.testing.worker_process` (built on :func:`wakeline.worker.serve`).

The agent modules here read what their apps need from the environment: the fake model
server's base URL (:data:`LLM_URL_ENV`) and the test's scratch directory (:data:`DATA_ENV`).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from wakeline import current_tool_call

SUPPORT = Path(__file__).parent
ENTRY = (sys.executable, "-m", "wakeline.testing.worker_process")
LLM_URL_ENV = "WAKELINE_TEST_LLM_URL"
DATA_ENV = "WAKELINE_TEST_DATA"
UNREACHABLE = "http://127.0.0.1:9/v1"
"""The base URL of apps built without :data:`LLM_URL_ENV` (nothing listens there)."""


def worker_command(target: str, *options: str) -> list[str]:
    """``target`` is ``FILE:NAME`` of a module in this directory."""
    return [*ENTRY, str(SUPPORT / target), *options]


def worker_env(
    *, llm_url: str | None = None, data: Path | None = None, **extra: str
) -> dict[str, str]:
    env = {**os.environ, **extra}
    if llm_url is not None:
        env[LLM_URL_ENV] = llm_url
    if data is not None:
        env[DATA_ENV] = str(data)
    return env


def llm_url() -> str:
    return os.environ.get(LLM_URL_ENV, UNREACHABLE)


def log_charge() -> None:
    """What the test agents' side-effecting tools do: append the current tool call's
    idempotency key to ``$WAKELINE_TEST_DATA/charges.txt`` (one line per execution)."""
    key = current_tool_call().idempotency_key
    with open(Path(os.environ[DATA_ENV]) / "charges.txt", "a") as out:
        out.write(f"{key}\n")
