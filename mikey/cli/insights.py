"""``mikey insights``: the analysis pipeline over a watchlist, once or on a schedule, as panels or JSON lines.

On a schedule (``--every``) each round also checks the user's alert rules (``alerts.watch``) on the same feed: a
rule that fires is printed (to stderr with ``--json``, so stdout stays one Insight per line) and posted to the
webhook, once.

The pipeline, the router and the engines load inside the command, so ``mikey --help`` stays light.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mikey.cli.common import load_settings, parse_date, stored_news
from mikey.errors import InvalidInput

if TYPE_CHECKING:
    from mikey.agents.pipeline import WatchlistResult
    from mikey.alerts.watch import AlertWatcher
    from mikey.domain import Insight
    from mikey.settings import Settings

SEVERITY_STYLE = {"info": "cyan", "warning": "yellow", "critical": "bold red"}


def insights(
    markets: Annotated[list[str] | None, typer.Argument(metavar="SYMBOLS",
                                                        help="e.g. SOL BTC; default: MIKEY_WATCHLIST, else all.")]
    = None,
    every: Annotated[float | None, typer.Option("--every", min=0.05, metavar="MINUTES",
                                                help="Repeat every MINUTES until Ctrl-C; default: run once.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON Insight per line instead of panels.")] = False,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Model group to ask first.")] = None,
    as_of: Annotated[str | None, typer.Option("--as-of", help="Replay clock, YYYY-MM-DD.")] = None,
    rounds: Annotated[int | None, typer.Option("--rounds", min=1, help="With --every: stop after N rounds.")]
    = None,
) -> None:
    """Market summary feed: one insight per market (summary, signal, risk, recommendations, alerts).

    Numbers and recommendations are computed by code; a model writes the summary, checked against the facts.
    A market that fails is reported on stderr and the others go on; the exit code is 1 if any failed.
    """
    from mikey.agents.pipeline import run_watchlist
    from mikey.market import symbols
    from mikey.runtime import open_runtime

    if rounds is not None and every is None:
        raise InvalidInput("--rounds counts the rounds of --every; give --every too")
    settings = load_settings(as_of=parse_date(as_of, "--as-of") if as_of else None)
    names = list(markets or settings.watchlist or symbols.SUPPORTED)
    runtime = open_runtime(settings, group=model, news=None)  # a clear error now for an unusable group
    context = runtime.pipeline_context()
    from rich.console import Console

    console = Console()
    watcher = _alert_watcher(settings, console, as_json) if every is not None else None
    done = 0
    try:
        while True:
            context.news = _stored_news(settings, names)
            result = run_watchlist(context, names)
            if every is not None and not as_json:
                console.print(f"[dim]insights at {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC[/dim]")
            _show(console, result, as_json)
            if watcher is not None:
                for rule_id, why in watcher.check(runtime.feed).new_errors.items():
                    print(f"alert {rule_id} could not be evaluated: {why}", file=sys.stderr)
            done += 1
            if every is None or (rounds is not None and done >= rounds):
                if result.errors:
                    raise typer.Exit(1)
                return
            context.previous = {i.symbol: i for i in result.insights}
            time.sleep(every * 60)
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    finally:
        if watcher is not None:
            watcher.close()
        runtime.close()


def _alert_watcher(settings: Settings, console: Any, as_json: bool) -> AlertWatcher:
    """The user's alert rules, printed as they fire: a line on stdout, or on stderr under --json."""
    from mikey.alerts.watch import AlertWatcher

    def echo(line: str) -> None:
        if as_json:
            print(line, file=sys.stderr, flush=True)
        else:
            from rich.text import Text

            console.print(Text(line, style="bold magenta"))

    return AlertWatcher.from_settings(settings, echo=echo, user_id=settings.user_id)


def _stored_news(settings: Settings, names: list[str]) -> list[Any]:
    """Last week's stored news and posts of the watchlist's markets (none without a market store)."""
    from mikey.market import symbols

    found: dict[tuple[str, str], Any] = {}
    for market in dict.fromkeys(m for m in map(symbols.normalize, names) if m is not None):
        for item in stored_news(settings, market):
            found.setdefault((type(item).__name__, item.id), item)  # an item tagged with two markets counts once
    return list(found.values())


def _show(console: Any, result: WatchlistResult, as_json: bool) -> None:
    import json

    for insight in result.insights:
        if as_json:
            typer.echo(json.dumps(insight.model_dump(mode="json")))
        else:
            console.print(panel(insight))
    for name, message in result.errors.items():
        print(f"error: {name}: {message}", file=sys.stderr)


def panel(insight: Insight) -> Any:
    """One insight as a rich panel. Model and headline text is shown as plain text, never as markup."""
    from rich.console import Group
    from rich.panel import Panel
    from rich.text import Text

    s, m, g = insight.signal, insight.sentiment, insight.grounding
    parts: list[Any] = [Text(insight.summary), Text()]
    parts.append(Text.assemble(("Signal ", "bold"), f"{s.action} strength {s.strength:.2f}   ",
                               ("Sentiment ", "bold"), f"{m.label} {m.score:+.2f} ({m.items} items)   ",
                               ("Risk ", "bold"), f"{insight.risk_level} {insight.risk_score:.0f}/100 "
                                                  "(1x long reference)"))
    if insight.recommendations:
        parts.append(Text("Recommendations", style="bold"))
        parts += [Text(f"  - {line}") for line in insight.recommendations]
    if insight.alerts:
        parts.append(Text("Alerts", style="bold"))
        parts += [Text.assemble("  ", (a.severity, SEVERITY_STYLE[a.severity]), f" {a.message}")
                  for a in insight.alerts]
    checked = f"{g.matched}/{g.checked} numbers matched the facts" if g.checked else "no numbers to check"
    removed = f", {len(g.removed)} removed" if g.removed else ""
    parts.append(Text(f"Summary written by {insight.group} ({insight.model}); {checked}{removed}.", style="dim"))
    price = f" {insight.facts.quote.price} USD" if insight.facts.quote is not None else ""
    return Panel(Group(*parts), title=f"{insight.symbol}{price} · {insight.as_of:%Y-%m-%d}", title_align="left")
