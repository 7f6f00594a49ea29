"""The public API is small, by audience, and pinned: changing it is a conscious decision."""

from __future__ import annotations

import subprocess
import sys

import pytest

import wakeline
import wakeline.providers
import wakeline.testing
import wakeline.worker

AUTHORS = {
    "App",
    "AppError",
    "Approval",
    "Budget",
    "CallInfo",
    "Client",
    "Context",
    "Deny",
    "LLMResult",
    "ModelCallError",
    "NondeterminismError",
    "Policy",
    "RouteError",
    "Target",
    "ReplayReport",
    "RetriableToolError",
    "RetryPolicy",
    "RunError",
    "RunHandle",
    "StepFailedError",
    "ToolCall",
    "ToolCallError",
    "WakelineError",
    "current_tool_call",
    "replay_run",
}

PROVIDERS = {
    "AnthropicProvider",
    "BUILTIN_PRICES",
    "MockModel",
    "ModelPrice",
    "ModelProvider",
    "ModelRequest",
    "ModelResponse",
    "OpenAICompatProvider",
    "PriceTable",
    "ProviderError",
    "RetriableProviderError",
    "TerminalProviderError",
    "Usage",
}


WORKERS = {"DEFAULT_GROUP", "Telemetry", "Worker", "serve"}

TESTING = {
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
}


@pytest.mark.parametrize(
    ("module", "expected"),
    [
        (wakeline, AUTHORS),
        (wakeline.providers, PROVIDERS),
        (wakeline.worker, WORKERS),
        (wakeline.testing, TESTING),
    ],
)
def test_public_names_are_pinned(module: object, expected: set[str]) -> None:
    assert set(getattr(module, "__all__")) == expected  # noqa: B009 - modules, not a typed attr
    for name in expected:
        assert getattr(module, name) is not None


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        getattr(wakeline, "Nope")  # noqa: B009


def _loaded_after(statement: str) -> set[str]:
    """The modules a fresh interpreter has loaded after ``statement``."""
    code = f"import sys\n{statement}\nprint('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def _offending(loaded: set[str], prefixes: tuple[str, ...]) -> list[str]:
    return sorted(m for m in loaded if any(m == p or m.startswith(p + ".") for p in prefixes))


DRIVER_LAYERS = (
    "wakeline.topics",
    "wakeline.projections",
    "wakeline.telemetry",
    "wakeline.providers",
    "wakeline.actors",
    "wakeline.api",
    "wakeline.cli",
    "wakeline.client",
    "rocksdict",
    "aiokafka",
    "httpx",
    "opentelemetry",
)


def test_the_core_loads_no_log_projection_telemetry_provider_or_network_module() -> None:
    loaded = _loaded_after("import wakeline.core.run_core, wakeline.core.context")
    assert "wakeline.core.run_core" in loaded  # the probe itself works
    assert _offending(loaded, DRIVER_LAYERS) == []


def test_import_wakeline_loads_neither_rocksdb_nor_opentelemetry() -> None:
    loaded = _loaded_after("import wakeline")
    assert _offending(loaded, ("rocksdict", "opentelemetry", "aiokafka", "httpx")) == []
    # and the lazy names still work, loading what they need only then
    loaded = _loaded_after("import wakeline\nwakeline.Client")
    assert "wakeline.client" in loaded


def test_control_flow_cannot_be_swallowed_by_except_exception() -> None:
    from wakeline.core.errors import StopRun

    assert not issubclass(StopRun, Exception)


LAYERS_BELOW = {
    "schemas": ("wakeline.schemas", "wakeline.jsonutil"),
    "core": ("wakeline.core", "wakeline.schemas", "wakeline.jsonutil"),
}


@pytest.mark.parametrize("layer", sorted(LAYERS_BELOW))
def test_nothing_in_schemas_or_core_imports_from_a_layer_above(layer: str) -> None:
    import ast
    from pathlib import Path

    allowed = LAYERS_BELOW[layer]
    root = Path(wakeline.__file__).parent / layer
    upward = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
                names = names[:1] if node.module != "wakeline" else names[1:]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                inside = name == "wakeline" or name.startswith("wakeline.")
                if inside and not any(name == a or name.startswith(a + ".") for a in allowed):
                    upward.append(f"{path.name}: {name}")
    assert upward == []
