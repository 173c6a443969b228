"""``mikey halt`` (the kill switch) and ``mikey positions audit`` (the hash-chained audit log).

Both write to and read from the execution stores under ``MIKEY_HOME``; every halt and resume is also an audit entry,
so the log says who stopped trading, when and why. The rest of the positions commands come with the brokers.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from mikey.cli.common import load_settings
from mikey.errors import InvalidInput

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
