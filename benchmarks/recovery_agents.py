"""The app of the Kafka recovery benchmark's worker processes (mock model, small latency).

    python -m wakeline.testing.worker_process benchmarks.recovery_agents:recovery_app() \
        --kafka BOOTSTRAP --group GROUP --state-dir STATE_DIR --session-timeout SESSION_S
"""

from __future__ import annotations

from benchmarks.harness import CHAIN, chain
from wakeline.core.app import App
from wakeline.providers.mock import MockModel

MODEL_LATENCY_S = 0.05


def recovery_app() -> App:
    app = App(name="bench-recovery", default_provider="mock", default_model="mock-1")
    app.provider("mock", MockModel(latency_s=MODEL_LATENCY_S))
    app.agent(chain, name=CHAIN)
    return app
