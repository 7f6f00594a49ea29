"""``App``: where users register agents, tools and model providers."""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, get_type_hints

from pydantic import TypeAdapter

from wakeline.core.model import ModelProvider
from wakeline.core.pricing import PriceTable
from wakeline.core.routing import Route, RouteError, Target
from wakeline.schemas.events import Budget
from wakeline.schemas.versions import version_key

if TYPE_CHECKING:
    from wakeline.core.governance import Policy


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Retries of retriable model and tool failures, each wait a durable timer."""

    max_attempts: int = 4
    initial_s: float = 1.0
    multiplier: float = 2.0
    max_s: float = 60.0

    def backoff_s(self, attempt: int) -> float:
        """Wait after failed attempt number ``attempt`` (1-based); deterministic, no jitter."""
        return float(min(self.max_s, self.initial_s * self.multiplier ** (attempt - 1)))


@dataclass(frozen=True, slots=True)
class AgentSpec:
    name: str
    fn: Callable[..., Awaitable[Any]]
    input_adapter: TypeAdapter[Any]
    output_adapter: TypeAdapter[Any]
    default_model: str | None = None
    default_provider: str | None = None
    budget: Budget | None = None
    version: str = ""
    code_digest: str = ""
    """sha256 of the function's source (informational: recorded in ``RunStarted``, never
    used to pick the code that drives a run)."""


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A tool.  ``idempotent=False`` tools are never re-run automatically after a crash."""

    name: str
    fn: Callable[..., Any]
    idempotent: bool = True
    requires_approval: bool = False


class AppError(Exception):
    pass


@dataclass
class App:
    """The registry a worker runs: agents, tools, providers and prices."""

    name: str = "wakeline"
    default_provider: str = "mock"
    default_model: str = "mock-1"
    providers: dict[str, ModelProvider] = field(default_factory=dict)
    prices: PriceTable = field(default_factory=PriceTable)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    agents: dict[str, AgentSpec] = field(default_factory=dict)
    """The highest registered version of each agent name."""
    agent_versions: dict[tuple[str, str], AgentSpec] = field(default_factory=dict)
    """Every registration, keyed by ``(name, version)``."""
    tools: dict[str, ToolSpec] = field(default_factory=dict)
    policies: dict[str, Policy] = field(default_factory=dict)
    routes: dict[str, Route] = field(default_factory=dict)

    def agent(
        self,
        fn: Callable[..., Any] | None = None,
        /,
        *,
        name: str | None = None,
        model: str | None = None,
        provider: str | None = None,
        budget: Budget | None = None,
        version: str = "",
    ) -> Any:
        """Register ``async def agent(ctx, input: In) -> Out``.  In/Out are typed by pydantic.

        ``budget`` is the default budget of its runs (a start command may bring its own).
        ``version`` names this code of the agent (explicit, never derived from the source):
        several versions of one name may be registered side by side; a run is driven only by
        the version it was started (or upgraded) with, see ``docs/versioning.md``."""

        def register(f: Callable[..., Any]) -> Callable[..., Any]:
            spec = _agent_spec(f, name or f.__name__, model, provider, budget, version)
            key = (spec.name, spec.version)
            if key in self.agent_versions:
                shown = f" version {spec.version!r}" if spec.version else ""
                raise AppError(f"agent {spec.name!r}{shown} is registered twice")
            self.agent_versions[key] = spec
            current = self.agents.get(spec.name)
            if current is None or version_key(spec.version) > version_key(current.version):
                self.agents[spec.name] = spec
            return f

        return register(fn) if fn is not None else register

    def tool(
        self,
        fn: Callable[..., Any] | None = None,
        /,
        *,
        name: str | None = None,
        idempotent: bool = True,
        requires_approval: bool = False,
    ) -> Any:
        """Register a tool: a sync or async function taking JSON-able keyword arguments."""

        def register(f: Callable[..., Any]) -> Callable[..., Any]:
            tool_name = name or f.__name__
            if tool_name in self.tools:
                raise AppError(f"tool {tool_name!r} is registered twice")
            self.tools[tool_name] = ToolSpec(tool_name, f, idempotent, requires_approval)
            return f

        return register(fn) if fn is not None else register

    def policy(self, fn: Policy | None = None, /, *, name: str | None = None) -> Any:
        """Register a policy: ``def check(call: CallInfo) -> Deny | None``, run before every
        model and tool call (in registration order).  It must be deterministic."""

        def register(f: Policy) -> Policy:
            policy_name = str(name or getattr(f, "__name__", "policy"))
            if policy_name in self.policies:
                raise AppError(f"policy {policy_name!r} is registered twice")
            self.policies[policy_name] = f
            return f

        return register(fn) if fn is not None else register

    def route(
        self,
        name: str,
        targets: Sequence[str | Target],
        *,
        attempts: int = 1,
        timeout_s: float | None = None,
    ) -> Route:
        """Declare a route for ``ctx.llm(..., route=name)``: targets (``"provider:model"``)
        tried in order, each checked against policies and budgets before it is sent, each
        given ``attempts`` on retriable errors (and ``timeout_s`` per attempt) before the
        next one (see :mod:`wakeline.core.routing`)."""
        if name in self.routes:
            raise RouteError(f"route {name!r} is declared twice")
        declared = Route.of(name, targets, attempts=attempts, timeout_s=timeout_s)
        self.routes[name] = declared
        return declared

    def provider(self, name: str, provider: ModelProvider) -> None:
        self.providers[name] = provider

    def get_agent(self, name: str, version: str | None = None) -> AgentSpec | None:
        """Version ``version`` of agent ``name``; its highest version when ``None``."""
        if version is None:
            return self.agents.get(name)
        return self.agent_versions.get((name, version))

    def hosted(self) -> frozenset[tuple[str, str]]:
        """The ``(agent, version)`` pairs this app hosts."""
        return frozenset(self.agent_versions)

    def with_providers(self, providers: Mapping[str, ModelProvider]) -> App:
        """A copy of this app whose providers are replaced (used by replay: none reachable)."""
        return App(
            name=self.name,
            default_provider=self.default_provider,
            default_model=self.default_model,
            providers=dict(providers),
            prices=self.prices,
            retry=self.retry,
            agents=self.agents,
            agent_versions=self.agent_versions,
            tools=self.tools,
            policies=self.policies,
            routes=self.routes,
        )


def _agent_spec(
    fn: Callable[..., Any],
    name: str,
    model: str | None,
    provider: str | None,
    budget: Budget | None,
    version: str,
) -> AgentSpec:
    if not inspect.iscoroutinefunction(fn):
        raise AppError(f"agent {name!r} must be an `async def` function")
    params = list(inspect.signature(fn).parameters)
    if len(params) != 2:
        raise AppError(f"agent {name!r} must take exactly (ctx, input)")
    hints = get_type_hints(fn)
    in_type = hints.get(params[1], Any)
    out_type = hints.get("return", Any)
    adapters = (TypeAdapter(in_type), TypeAdapter(out_type))
    return AgentSpec(name, fn, *adapters, model, provider, budget, str(version), _digest(fn))


def _digest(fn: Callable[..., Any]) -> str:
    """sha256 of the function's source, or ``""`` when its source is not available."""
    try:
        source = inspect.getsource(fn)
    except (OSError, TypeError):
        return ""
    return hashlib.sha256(source.encode()).hexdigest()
