"""The test toolkit: a core driver with a fake clock and an always-replay mode, in-process
runtimes, event-driven waits and call seams (fake providers, brokers and soak helpers are in
the submodules).

``import wakeline.testing`` stays light: the runtimes, which load the worker, are imported on
first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wakeline._lazy import lazy_names
from wakeline.testing.core import CoreDriver, FakeClock, ReplayMismatch
from wakeline.testing.seams import Calls, observe_calls
from wakeline.testing.waits import (
    RunUnloads,
    wait_for_event,
    wait_status,
    wait_until_ended,
)

if TYPE_CHECKING:
    from wakeline.testing.harness import (
        LocalRuntime,
        kafka_runtime,
        local_runtime,
        worker_running,
    )

__all__ = [
    "Calls",
    "CoreDriver",
    "FakeClock",
    "LocalRuntime",
    "ReplayMismatch",
    "RunUnloads",
    "kafka_runtime",
    "local_runtime",
    "observe_calls",
    "wait_for_event",
    "wait_status",
    "wait_until_ended",
    "worker_running",
]

_LAZY = {
    "LocalRuntime": "wakeline.testing.harness",
    "kafka_runtime": "wakeline.testing.harness",
    "local_runtime": "wakeline.testing.harness",
    "worker_running": "wakeline.testing.harness",
}


__getattr__ = lazy_names(__name__, _LAZY, globals())
