"""CLI commands for people in the loop: approve, reject, budget raise, resolve, audit."""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation

import click

from wakeline.cli.common import Settings, cli_issuer, run_async, send, views_open
from wakeline.cli.render import plain
from wakeline.ledger import Ledger, TenantState, ledger_key
from wakeline.projections.rows import AuditEntry, AuditReport
from wakeline.schemas.budgets import METRICS, BudgetMetric


def echo(line: str) -> None:
    """One line of output; run data in it (ids, gates, names) is untrusted: made plain."""
    click.echo(plain(line))


def register(main: click.Group) -> None:
    main.add_command(approve)
    main.add_command(reject)
    main.add_command(budget)
    main.add_command(resolve)
    main.add_command(audit)


@click.command()
@click.argument("run_id")
@click.argument("gate")
@click.option("--reason", default="")
@click.pass_obj
def approve(settings: Settings, run_id: str, gate: str, reason: str) -> None:
    """Approve GATE of RUN_ID (a gate name, or the policy name of a denial waiting for you)."""
    send(settings, lambda c: c.approve(run_id, gate, reason))
    echo(f"approval of {gate!r} sent for {run_id}")


@click.command()
@click.argument("run_id")
@click.argument("gate")
@click.option("--reason", default="")
@click.pass_obj
def reject(settings: Settings, run_id: str, gate: str, reason: str) -> None:
    """Reject GATE of RUN_ID."""
    send(settings, lambda c: c.reject(run_id, gate, reason))
    echo(f"rejection of {gate!r} sent for {run_id}")


@click.group()
def budget() -> None:
    """Budgets."""


@budget.command("raise")
@click.argument("run_id")
@click.option("--metric", type=click.Choice(METRICS))
@click.option("--limit", required=True, help="the new limit, e.g. 2.50 for usd")
@click.pass_obj
def budget_raise(settings: Settings, run_id: str, metric: BudgetMetric, limit: str) -> None:
    """Raise a limit a suspended run waits on; it resumes without redoing anything."""
    send(settings, lambda c: c.raise_budget(run_id, metric, limit))
    echo(f"{metric} limit of {run_id} raised to {limit}")


def _shared_key(tenant: str | None, agent: str | None) -> str:
    if (tenant is None) == (agent is None):
        raise click.UsageError("name exactly one of --tenant or --agent")
    return ledger_key("tenant", tenant) if tenant is not None else ledger_key("agent", str(agent))


@budget.command("set")
@click.option("--tenant", default=None)
@click.option("--agent", default=None)
@click.option("--usd", required=True, help="the dollar limit ('none' removes it)")
@click.pass_obj
def budget_set(settings: Settings, tenant: str | None, agent: str | None, usd: str) -> None:
    """Set a tenant's or an agent's dollar budget, shared by all its runs on every worker."""
    key = _shared_key(tenant, agent)
    limit = None if usd.lower() == "none" else _decimal(usd)

    async def go() -> None:
        async with settings.connect() as client:
            ledger = Ledger(client.log, settings.topics.ledger, writer=cli_issuer())
            await ledger.set_limit(key, limit, cli_issuer())

    run_async(go)
    echo(f"{key}: limit {'none' if limit is None else f'${limit}'}")


@budget.command("show")
@click.option("--tenant", default=None)
@click.option("--agent", default=None)
@click.pass_obj
def budget_show(settings: Settings, tenant: str | None, agent: str | None) -> None:
    """A shared budget's limit, settled spend and reservations in flight, from the ledger."""
    key = _shared_key(tenant, agent)

    async def go() -> TenantState:
        async with settings.connect() as client:
            return await Ledger(client.log, settings.topics.ledger).state(key)

    state = run_async(go)
    limit = "none" if state.limit is None else f"${state.limit}"
    echo(
        f"{key}: limit {limit}, spent ${state.spent}, "
        f"{len(state.active)} reservations in flight (${state.committed - state.spent})"
    )


def _decimal(text: str) -> Decimal:
    try:
        value = Decimal(text)
    except InvalidOperation as exc:
        raise click.BadParameter(f"{text!r} is not a number") from exc
    if not value.is_finite() or value < 0:
        raise click.BadParameter(f"{text!r} must be a finite number >= 0")
    return value


@click.command()
@click.argument("run_id")
@click.argument("step", type=int)
@click.option("--retry", "how", flag_value="RETRY", help="run it again with the same key")
@click.option("--supply", "result", default=None, help="the call's result, as JSON")
@click.option("--fail", "how", flag_value="FAIL", help="fail the run")
@click.pass_obj
def resolve(
    settings: Settings, run_id: str, step: int, how: str | None, result: str | None
) -> None:
    """Resolve the in-doubt tool call at STEP of RUN_ID."""
    if result is not None:
        try:
            value = json.loads(result)
        except json.JSONDecodeError as exc:
            raise click.BadParameter(f"--supply is not JSON: {exc}") from exc
        send(settings, lambda c: c.resolve_in_doubt(run_id, step, "SUPPLY", value))
    elif how in ("RETRY", "FAIL"):
        send(settings, lambda c: c.resolve_in_doubt(run_id, step, how))  # type: ignore[arg-type]
    else:
        raise click.UsageError("choose one of --retry, --supply JSON, --fail")
    echo(f"resolution sent for {run_id} seq {step}")


@click.group()
def audit() -> None:
    """The hash-chained audit view."""


@audit.command("verify")
@click.argument("run_id")
@click.pass_obj
def audit_verify(settings: Settings, run_id: str) -> None:
    """Recompute RUN_ID's hash chain from the log; exit 1 naming the first changed event."""

    async def go() -> AuditReport:
        async with views_open(settings) as views:
            return await views.verify_audit(run_id)

    report = run_async(go)
    if report.ok:
        echo(f"ok: {report.events} events of {run_id} match their audited hashes")
        return
    if not report.problems:
        raise click.ClickException(f"unknown run {run_id}")
    for p in report.problems:
        echo(f"TAMPERED: seq {p.seq} ({p.type}) at offset {p.offset}: {p.problem}")
    raise SystemExit(1)


@audit.command("show")
@click.argument("run_id")
@click.pass_obj
def audit_show(settings: Settings, run_id: str) -> None:
    """The run's audit trail: each event's hash, and who decided what."""

    async def go() -> list[AuditEntry]:
        async with views_open(settings) as views:
            return views.audit_trail(run_id)

    for entry in run_async(go):
        by = f"  by {entry.by!r}" if entry.by is not None else ""
        echo(f"{entry.seq:>4} {entry.hash[:16]} {entry.type}{by}")
