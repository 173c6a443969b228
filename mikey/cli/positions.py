"""``mikey trade``, ``mikey positions ...`` and ``mikey halt``: orders proposed, approved and executed from the CLI.

All of them go through the runtime's ``Executor`` (proposals, gates and the broker ``MIKEY_BROKER`` names), the same
one the chat graph uses, so an order proposed in chat can be approved here and the reverse. Opening it reconciles
orders a crashed process left submitted. ``--json`` prints one JSON document per command (one per line for lists).
Every halt and resume is also an audit entry, so the log says who stopped trading, when and why.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from mikey.cli.common import load_settings
from mikey.errors import ApprovalRequired, InvalidInput, NotFound

if TYPE_CHECKING:
    from collections.abc import Iterator

    from mikey.execution.executor import ExecutionResult, Executor
    from mikey.execution.proposals import OrderProposal
    from mikey.settings import Settings

positions_app = typer.Typer(help="Positions and their audit log.", no_args_is_help=True)


def halt(
    off: Annotated[bool, typer.Option("--off", help="Lift the halt: new positions may be submitted again.")] = False,
    reason: Annotated[str | None, typer.Option("--reason", "-r", help="Why trading stops (kept in the audit log).")]
    = None,
    as_json: Annotated[bool, typer.Option("--json", help="The halt state as JSON.")] = False,
) -> None:
    """Stop every new position at once, in every MIKEY process, until `mikey halt --off` (closing stays allowed)."""
    from mikey.execution.audit import AuditLog
    from mikey.execution.halt import KillSwitch

    settings = load_settings()
    switch = KillSwitch.from_settings(settings)
    actor = settings.user_id
    if off:
        if reason is not None:
            raise InvalidInput("--reason is for halting; `mikey halt --off` takes none")
        state = switch.resume(actor)
        action, why = "resumed", f"halt lifted (it was: {state.reason})"
    else:
        state = switch.halt(reason or "halted from the command line", actor)
        action, why = "halted", state.reason
    with AuditLog(settings.audit_db) as log:
        log.append(actor=actor, action=action, subject="trading", reason=why,
                   payload={"since": state.since.isoformat(), "halt_reason": state.reason})
    if as_json:
        typer.echo(json.dumps({"halted": not off, "reason": state.reason, "actor": state.actor,
                               "since": state.since.isoformat()}))
    else:
        typer.echo("trading resumed: new positions may be submitted" if off else state.describe())


@positions_app.command("audit")
def audit(
    verify: Annotated[bool, typer.Option("--verify", help="Check the hash chain; exit 1 if it is broken.")] = False,
    subject: Annotated[str | None, typer.Option("--subject", help="Only this proposal's or position's entries.")]
    = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON entry per line (with --verify: the check).")]
    = False,
) -> None:
    """The audit log of every transition, oldest first; --verify detects an edited or deleted entry."""
    from mikey.execution.audit import AuditLog

    settings = load_settings()
    if not settings.audit_db.exists():
        if verify:
            typer.echo(json.dumps({"ok": True, "entries": 0}) if as_json else "audit log: empty (nothing recorded)")
        return
    with AuditLog(settings.audit_db) as log:
        if verify:
            check = log.verify()
            typer.echo(check.model_dump_json() if as_json else (
                f"audit log intact: {check.entries} entries" if check.ok else
                f"audit log BROKEN at entry {check.first_bad_seq} ({check.reason}): {check.detail}"))
            if not check.ok:
                raise typer.Exit(1)
            return
        for entry in log.entries(subject):
            typer.echo(entry.model_dump_json() if as_json else
                       f"{entry.seq:>5} {entry.ts:%Y-%m-%d %H:%M:%S} {entry.actor:<10} {entry.action:<10} "
                       f"{entry.subject:<14} {entry.reason}")


JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
CLI_THREAD = "cli"
"""The thread of orders proposed from the command line (chat proposals keep their conversation's thread)."""


@contextmanager
def _executor(settings: Settings) -> Iterator[Executor]:
    from mikey.runtime import open_runtime

    with open_runtime(settings, memory=None, news=None, warm_local=False) as runtime:
        yield runtime.executor()


def _proposal_json(p: OrderProposal) -> dict:
    data = p.model_dump(mode="json")
    data["context"] = json.loads(p.context) if p.context else None
    return data


def _proposal_line(p: OrderProposal) -> str:
    verb = {"open": "open", "close": "close", "reduce": "reduce"}[p.kind]
    target = f" position {p.position_id}" if p.position_id else ""
    return (f"proposal {p.id} [{p.status}] {verb} {p.market} {p.side} {p.size:g} at {p.leverage:g}x, collateral "
            f"{p.collateral:,.2f} USD, price {p.price:,.4f} (worst fill {p.price_bound:,.4f}){target}, expires "
            f"{p.expires_at:%Y-%m-%d %H:%M:%S} UTC" + (f": {p.reason}" if p.reason else ""))


def _result_json(r: ExecutionResult) -> dict:
    return {"outcome": r.outcome, "message": r.message, "proposal": _proposal_json(r.proposal),
            "fill": r.fill.model_dump(mode="json") if r.fill else None,
            "position": r.position.model_dump(mode="json") if r.position else None,
            "gates": [c.model_dump() for c in r.gates.checks] if r.gates else None,
            "discrepancies": r.discrepancies, "transaction": r.transaction}


def _print_result(r: ExecutionResult, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(_result_json(r)))
    else:
        typer.echo(r.message)
        if r.transaction:
            typer.echo(f"transaction (base64): {r.transaction}")
        for note in r.discrepancies:
            typer.echo(f"WARNING: {note}")
        if r.gates is not None:
            for check in r.gates.checks:
                typer.echo(f"  [{'pass' if check.passed else 'FAIL'}] {check.name}: {check.reason}")
    if r.outcome == "failed":
        raise typer.Exit(1)


def _confirm(p: OrderProposal, yes: bool, verb: str) -> None:
    if yes:
        return
    typer.echo(_proposal_line(p))
    if not typer.confirm(f"{verb} this order?", default=False):
        raise typer.Exit(1)


def trade(
    symbol: Annotated[str, typer.Argument(help="Market, e.g. SOL, BTC, ETH.")],
    side: Annotated[Literal["long", "short"], typer.Argument(help="long or short.")],
    leverage: Annotated[float, typer.Option("--leverage", "-l", help="Leverage, e.g. 3.")],
    collateral: Annotated[float, typer.Option("--collateral", "-c", help="Margin in USD(C).")],
    risk_tolerance: Annotated[str | None, typer.Option("--risk-tolerance", help="low, medium (default) or high: "
                                                       "the risk limits the gate checks.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Propose a position (as chat does): nothing executes until `mikey positions approve ID`."""
    from mikey.market import symbols

    if risk_tolerance not in (None, "low", "medium", "high"):
        raise InvalidInput(f"--risk-tolerance must be low, medium or high, not {risk_tolerance!r}")
    settings = load_settings()
    market = symbols.resolve(symbol)
    with _executor(settings) as executor:
        p = executor.propose_open(user_id=settings.user_id, thread_id=CLI_THREAD, market=market, side=side,
                                  leverage=leverage, collateral=collateral, tolerance=risk_tolerance)
    if as_json:
        typer.echo(json.dumps(_proposal_json(p)))
        return
    typer.echo(_proposal_line(p))
    context = json.loads(p.context) if p.context else {}
    if context.get("risk_level"):
        liq = context.get("liquidation_price")
        typer.echo(f"risk {context['risk_level']} ({context['risk_score']:.0f}/100), liquidation "
                   f"{'none' if liq is None else f'{liq:,.4f}'}")
    typer.echo(f"Nothing executes until you approve it: mikey positions approve {p.id}")


@positions_app.command("list")
def list_positions(
    include_closed: Annotated[bool, typer.Option("--all", help="Closed positions and decided proposals too.")]
    = False,
    as_json: JsonOption = False,
) -> None:
    """Open positions marked to the oracle, today's PnL, and proposals awaiting approval."""
    from mikey.domain.utc import utc_now
    from mikey.execution.portfolio import describe_snapshot, snapshot

    settings = load_settings()
    with _executor(settings) as executor:
        executor.store.expire_due()
        snap = snapshot(executor.broker, executor.feed, settings.user_id, now=utc_now())
        closed = [p for p in executor.broker.positions(settings.user_id, include_closed=True)
                  if p.status == "closed"] if include_closed else []
        proposals = [p for p in executor.store.find(user_id=settings.user_id)
                     if include_closed or p.status in ("proposed", "approved", "submitted")]
    if as_json:
        typer.echo(json.dumps({
            "broker": snap.broker, "open": [m.model_dump(mode="json") for m in snap.open],
            "closed": [p.model_dump(mode="json") for p in closed], "realised_today": snap.realised_today,
            "unrealised": snap.unrealised, "total_today": snap.total_today, "notes": snap.notes,
            "proposals": [_proposal_json(p) for p in proposals]}))
        return
    typer.echo(describe_snapshot(snap))
    for p in closed:
        typer.echo(f"closed {p.id}: {p.market} {p.side} entry {p.entry_price:,.4f} exit {p.exit_price or 0:,.4f}, "
                   f"realised {p.realised_pnl:+,.2f} USD")
    for p in proposals:
        typer.echo(_proposal_line(p))


@positions_app.command("show")
def show(
    item: Annotated[str, typer.Argument(help="A position id or a proposal id.")],
    as_json: JsonOption = False,
) -> None:
    """One position or proposal, with its audit entries (discrepancies with the broker included)."""
    from mikey.execution.audit import AuditLog

    settings = load_settings()
    with _executor(settings) as executor:
        try:
            position = executor.broker.position(item)
        except NotFound:
            position = None
        proposal = None
        if position is None:
            try:
                proposal = executor.store.get(item)
            except InvalidInput:
                raise NotFound(f"no position or proposal {item!r}") from None
        elif position.user_id != settings.user_id:
            raise NotFound(f"no position {item!r} of yours")
        if proposal is not None and proposal.user_id != settings.user_id:
            raise NotFound(f"no proposal {item!r} of yours")
        subject = item if proposal is not None else position.proposal_id  # type: ignore[union-attr]
        mark = None
        if position is not None and position.status == "open":
            mark = float(executor.feed.quote(position.market).price)
    entries = []
    if subject and settings.audit_db.exists():
        with AuditLog(settings.audit_db) as log:
            entries = log.entries(subject)
    if as_json:
        typer.echo(json.dumps({"position": position.model_dump(mode="json") if position else None,
                               "mark_price": mark,
                               "unrealised_pnl": position.unrealised_pnl(mark) - position.unreported_funding
                               if position and mark else None,
                               "proposal": _proposal_json(proposal) if proposal else None,
                               "audit": [e.model_dump(mode="json") for e in entries]}))
        return
    if position is not None:
        p = position
        typer.echo(f"position {p.id} [{p.status}] {p.market} {p.side} {p.size:g} at {p.leverage:g}x, entry "
                   f"{p.entry_price:,.4f}, collateral {p.collateral:,.2f} USD")
        typer.echo(f"realised {p.realised_pnl:+,.2f} USD (fees {p.fees:,.2f}, funding {p.funding:+,.2f})"
                   + (f", exit {p.exit_price:,.4f}" if p.exit_price else ""))
        if mark is not None:
            typer.echo(f"mark {mark:,.4f}: unrealised {p.unrealised_pnl(mark) - p.unreported_funding:+,.2f} USD")
        if p.liquidation_price is not None:
            typer.echo(f"the broker's liquidation price: {p.liquidation_price:,.4f}")
    if proposal is not None:
        typer.echo(_proposal_line(proposal))
    for e in entries:
        flag = "WARNING " if e.action == "discrepancy" else ""
        typer.echo(f"  {e.ts:%Y-%m-%d %H:%M:%S} {e.action:<11} {flag}{e.reason}")


@positions_app.command("approve")
def approve(
    proposal_id: Annotated[str, typer.Argument(help="The proposal to approve.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    digest: Annotated[str | None, typer.Option("--digest", help="The digest of the order you were shown elsewhere "
                                               "(default: the order shown here).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Approve a proposal of yours and execute it (gates, then the broker, once)."""
    settings = load_settings()
    with _executor(settings) as executor:
        p = executor.store.get(proposal_id)
        if p.user_id != settings.user_id:
            raise ApprovalRequired(f"proposal {proposal_id} belongs to another user; only they can approve it")
        _confirm(p, yes or as_json, "Approve and execute")
        result = executor.approve(proposal_id, user_id=settings.user_id, digest=digest or p.terms_digest())
    _print_result(result, as_json)


@positions_app.command("reject")
def reject(
    proposal_id: Annotated[str, typer.Argument(help="The proposal to reject.")],
    reason: Annotated[str, typer.Option("--reason", "-r", help="Why (kept in the audit log).")]
    = "rejected by the user",
    as_json: JsonOption = False,
) -> None:
    """Reject a proposal of yours: it can never execute."""
    settings = load_settings()
    with _executor(settings) as executor:
        p = executor.reject(proposal_id, user_id=settings.user_id, reason=reason)
    typer.echo(json.dumps(_proposal_json(p)) if as_json else f"rejected proposal {p.id}; nothing was executed")


@positions_app.command("close")
def close(
    position_id: Annotated[str, typer.Argument(help="The open position to close.")],
    fraction: Annotated[float, typer.Option("--fraction", "-f", help="Share to close, in (0, 1]; 1: all.")] = 1.0,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Approve and execute now, without asking.")] = False,
    propose_only: Annotated[bool, typer.Option("--propose-only", help="Only propose; approve it later.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Close (or reduce, with --fraction) one of your positions: a proposal, approved here and executed once."""
    settings = load_settings()
    with _executor(settings) as executor:
        p = executor.propose_close(user_id=settings.user_id, thread_id=CLI_THREAD, position_id=position_id,
                                   fraction=fraction)
        if propose_only or (as_json and not yes):
            typer.echo(json.dumps(_proposal_json(p)) if as_json else
                       f"{_proposal_line(p)}\napprove it with: mikey positions approve {p.id}")
            return
        _confirm(p, yes, "Approve and execute")
        result = executor.approve(p.id, user_id=settings.user_id, digest=p.terms_digest())
    _print_result(result, as_json)


@positions_app.command("review")
def review_trades(as_json: JsonOption = False) -> None:
    """Closed trades: PnL, win rate, fees, funding, and each trade's outcome against the signal MIKEY gave."""
    from mikey.execution.portfolio import describe_review, review

    settings = load_settings()
    with _executor(settings) as executor:
        rev = review(executor.broker, executor.store, settings.user_id)
    if as_json:
        typer.echo(json.dumps({"trades": [t.model_dump(mode="json") for t in rev.trades], "realised": rev.realised,
                               "fees": rev.fees, "funding": rev.funding, "win_rate": rev.win_rate,
                               "by_signal": {k: {"won": w, "trades": n} for k, (w, n) in rev.by_signal().items()}}))
        return
    typer.echo(describe_review(rev))
    for t in rev.trades:
        p = t.position
        typer.echo(f"  {p.closed_at:%Y-%m-%d} {p.market} {p.side} {p.entry_price:,.4f} -> {p.exit_price or 0:,.4f}: "
                   f"{p.realised_pnl:+,.2f} USD ({'won' if t.won else 'lost'}; signal {t.signal or 'none'})")
