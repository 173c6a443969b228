"""``mikey alerts add | list | delete | check``: the alert rules chat sets, from the command line.

``add`` reads a rule from words with the chat's parser; ``check`` evaluates the active rules once on the configured
feed and delivers what fires (``mikey insights --every`` and ``mikey data ingest`` do the same on their own
schedules). ``--json`` prints one JSON rule per line.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from mikey.cli.common import load_settings, parse_date
from mikey.errors import InvalidInput

if TYPE_CHECKING:
    from mikey.alerts.rules import AlertRule

alerts_app = typer.Typer(help="Alert rules: set in chat or here, checked by `mikey insights --every` and "
                              "`mikey data ingest`.", no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="One JSON rule per line instead of text.")]
AsOfOption = Annotated[str | None, typer.Option("--as-of", help="Replay clock, YYYY-MM-DD.")]
CLI_THREAD = "cli"


def _line(rule: AlertRule) -> str:
    from mikey.alerts.rules import fmt

    text = f"{rule.id}  [{rule.status}]  {rule.describe()}  (set {rule.created_at:%Y-%m-%d %H:%M} UTC"
    if rule.fired_at is not None and rule.fired_value is not None:
        unit = "%" if rule.kind == "liquidation_distance_below" else ""
        text += f"; fired {rule.fired_at:%Y-%m-%d %H:%M} UTC at {fmt(rule.fired_value)}{unit}"
        if rule.fired_as_of is not None:
            text += f" (data of {rule.fired_as_of:%Y-%m-%d %H:%M} UTC)"
        text += f", {rule.delivery}" + (f": {rule.delivery_error}" if rule.delivery_error else "")
    return text + f")  \"{rule.text}\""


@alerts_app.command("add")
def add(
    message: Annotated[str, typer.Argument(help="In words, e.g. \"ping me if btc drops below 25k\".")],
    as_of: AsOfOption = None,
    as_json: JsonOption = False,
) -> None:
    """Set an alert from words, as chat does; a request that lacks something is answered with the question."""
    from mikey.alerts.chat import EXAMPLES, confirmation, parse_request
    from mikey.alerts.rules import Clarification
    from mikey.alerts.store import AlertStore
    from mikey.market.feeds import open_feed

    settings = load_settings(as_of=parse_date(as_of, "--as-of") if as_of else None)
    feed = open_feed(settings)
    try:
        parsed = parse_request(feed, settings.user_id, CLI_THREAD, message)
    finally:
        if callable(close := getattr(feed, "close", None)):
            close()
    if parsed is None:
        raise InvalidInput(f"no alert in that; say, for example, {EXAMPLES}")
    if isinstance(parsed, Clarification):
        raise InvalidInput(parsed.question)
    rule = AlertStore(settings.alerts_db).add(parsed)
    typer.echo(rule.model_dump_json() if as_json else confirmation(rule))


@alerts_app.command("list")
def list_alerts(
    include_all: Annotated[bool, typer.Option("--all", help="Deleted alerts too.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Your alerts, oldest first: active and fired ones (with how each was delivered); --all adds deleted ones."""
    from mikey.alerts.store import AlertStore

    settings = load_settings()
    statuses = ("active", "fired", "deleted") if include_all else ("active", "fired")
    rules = AlertStore(settings.alerts_db).list(settings.user_id, statuses=statuses)
    if not rules and not as_json:
        typer.echo("no alerts; set one with: mikey alerts add \"ping me if btc drops below 25k\"")
    for rule in rules:
        typer.echo(rule.model_dump_json() if as_json else _line(rule))


@alerts_app.command("delete")
def delete(
    alert_id: Annotated[str, typer.Argument(metavar="ID", help="The alert's id (`mikey alerts list`).")],
    as_json: JsonOption = False,
) -> None:
    """Delete one of your alerts: it never fires (it stays in `mikey alerts list --all`)."""
    from mikey.alerts.store import AlertStore

    settings = load_settings()
    rule = AlertStore(settings.alerts_db).delete(alert_id, user_id=settings.user_id)
    typer.echo(rule.model_dump_json() if as_json else f"deleted alert {rule.id}: {rule.describe()}")


@alerts_app.command("check")
def check(as_of: AsOfOption = None, as_json: JsonOption = False) -> None:
    """Evaluate your active alerts once on the configured feed; deliver (terminal, webhook) what fires."""
    from mikey.alerts.watch import AlertWatcher
    from mikey.market.feeds import open_feed

    settings = load_settings(as_of=parse_date(as_of, "--as-of") if as_of else None)
    feed = open_feed(settings)
    watcher = AlertWatcher.from_settings(settings, echo=None if as_json else typer.echo, user_id=settings.user_id)
    try:
        result = watcher.check(feed)
    finally:
        watcher.close()
        if callable(close := getattr(feed, "close", None)):
            close()
    for rule_id, why in result.errors.items():
        print(f"alert {rule_id} could not be evaluated: {why}", file=sys.stderr)
    if as_json:
        for delivered in result.fired:
            typer.echo(delivered.rule.model_dump_json())
    elif not result.fired:
        typer.echo("no alert fired")
