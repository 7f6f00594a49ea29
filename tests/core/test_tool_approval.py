"""``@app.tool(requires_approval=True)``: a durable gate opens before the tool runs."""

from __future__ import annotations

from wakeline import App, Context, ToolCallError, jsonutil
from wakeline.core.activation import DecideGate, WaitingOnPeople
from wakeline.schemas.events import GateOpened, RunCompleted, RunStarted, ToolCallRequested
from wakeline.testing import CoreDriver


def make_app() -> App:
    app = App()

    @app.tool(requires_approval=True, idempotent=False)
    def transfer(amount: int) -> str:
        return f"moved {amount}"

    @app.agent
    async def pay(ctx: Context, amount: int) -> str:
        try:
            return str(await ctx.tool("transfer", amount=amount))
        except ToolCallError as exc:
            return f"refused: {exc.message}"

    return app


def start() -> CoreDriver:
    core = CoreDriver("r", make_app(), always_replay=True)
    core.start(RunStarted("pay", jsonutil.dumps(5)))
    return core


def test_the_gate_opens_before_the_tool_and_nothing_runs_until_a_person_decides() -> None:
    core = start()
    assert core.last is not None
    gate = core.journal[-1].payload
    assert isinstance(gate, GateOpened) and gate.name == "tool:transfer"
    assert jsonutil.loads(gate.payload) == {"tool": "transfer", "args": {"amount": 5}}
    assert core.last.effects == () and isinstance(core.status, WaitingOnPeople)
    assert [e.seq for e in core.last.waiting] == [1]
    approved = core.activate(DecideGate("tool:transfer", True, "alice", "ok"))
    [effect] = approved.effects
    assert isinstance(effect.request.payload, ToolCallRequested)
    assert effect.request.payload.tool == "transfer"


def test_a_rejection_raises_in_the_agent_and_the_tool_never_runs() -> None:
    core = start()
    out = core.activate(DecideGate("tool:transfer", False, "bob", "too much"))
    assert not any(isinstance(e.payload, ToolCallRequested) for e in core.journal)
    assert out.effects == ()
    terminal = core.terminal
    assert terminal is not None and isinstance(terminal.payload, RunCompleted)
    assert "rejected by bob: too much" in terminal.payload.output


def test_a_crash_while_the_gate_is_open_keeps_waiting_and_runs_nothing() -> None:
    core = start()
    resumed = core.crash()
    out = resumed.recover()
    assert out.events == () and out.effects == () and out.in_doubt == ()
    assert isinstance(out.status, WaitingOnPeople)
    approved = resumed.activate(DecideGate("1", True, "carol"))  # by the gate's seq
    assert [type(e.request.payload) for e in approved.effects] == [ToolCallRequested]
