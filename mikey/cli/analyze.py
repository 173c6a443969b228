"""``mikey analyze``: the analysis engines on one market, as tables, JSON and an optional chart."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from mikey.cli.common import load_settings, stored_news, utc_day
from mikey.errors import DataUnavailable, InvalidInput


def analyze(
    symbol: Annotated[str, typer.Argument(help="Market, e.g. SOL.")],
    history: Annotated[Path | None, typer.Option("--history", help="Analyse this OHLCV CSV instead of the feed.")]
    = None,
    as_of: Annotated[str | None, typer.Option("--as-of", help="Analyse as of this day, YYYY-MM-DD.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    chart: Annotated[Path | None, typer.Option("--chart", help="Draw candles, indicators and signals to a PNG.")]
    = None,
) -> None:
    """Indicators, patterns, sentiment, a BUY/SELL/HOLD signal with its factors, and a backtest, all by code."""
    from mikey.analysis.ohlcv import frame_from_candles, load_ohlcv_csv
    from mikey.analysis.report import analyze as run
    from mikey.market import symbols

    settings = load_settings()
    market = symbols.resolve(symbol) if history is None else symbols.resolve_own(symbol)  # a CSV: any market
    clock = utc_day(as_of, "--as-of") if as_of else None
    if chart is not None:
        from mikey.market.chart import chart_path

        chart = chart_path(chart)  # a folder that does not exist is refused before the work, not after it
    if history is not None:
        if not history.is_file():
            raise InvalidInput(f"--history file not found: {history}")
        frame, source = load_ohlcv_csv(history), f"csv:{history.name}"
    else:
        from mikey.market.feeds import open_feed

        feed = open_feed(settings)
        candles = feed.candles(market, end=clock) or feed.candles(market)  # none by then: say where the bars start
        frame, source = frame_from_candles(candles), feed.name
    if clock is not None and len(frame) and frame.index.min() > clock:
        raise DataUnavailable(f"no {market} bars on or before {as_of} in {source}: its bars start "
                              f"{frame.index.min():%Y-%m-%d}")
    report = run(frame, symbol=market, source=source, news=stored_news(settings, market), as_of=clock)
    if chart is not None:
        from mikey.analysis.chart import analysis_chart

        analysis_chart(frame[frame.index <= report.as_of], report, chart)
    if as_json:
        typer.echo(report.model_dump_json(indent=2))
    else:
        _print(report)
    if chart is not None and not as_json:
        typer.echo(f"chart written to {chart}")


def _print(report) -> None:  # noqa: ANN001
    from rich.console import Console
    from rich.table import Table

    console = Console()
    s = report.signal
    console.print(f"[bold]{report.symbol}[/bold] {report.price} USD as of {report.as_of:%Y-%m-%d} "
                  f"({report.bars} bars from {report.source})", highlight=False)
    console.print(f"signal: [bold]{s.action}[/bold] strength {s.strength:.2f}", highlight=False)
    factors = Table(title="signal factors (positive = towards BUY)")
    for column in ("factor", "contribution", "reason"):
        factors.add_column(column)
    for f in s.factors:
        factors.add_row(f.name, f"{f.contribution:+.3f}", f.reason)
    console.print(factors)
    indicators = Table(title="indicators (last bar)")
    indicators.add_column("indicator")
    indicators.add_column("value", justify="right")
    for name, value in report.indicators.items():
        indicators.add_row(name, f"{value:.6g}")
    console.print(indicators)
    if report.patterns:
        found = Table(title="patterns")
        for column in ("kind", "name", "direction", "strength", "bars"):
            found.add_column(column)
        for p in report.patterns:
            found.add_row(p.kind, p.name, p.direction, f"{p.strength:.2f}", f"{p.start:%Y-%m-%d}..{p.end:%Y-%m-%d}")
        console.print(found)
    m = report.sentiment
    console.print(f"sentiment: {m.label} {m.score:+.2f} from {m.items} items ({m.method})", highlight=False)
    b = report.backtest
    console.print(f"backtest {b.start:%Y-%m-%d}..{b.end:%Y-%m-%d}: return {b.total_return:+.1%} vs buy-and-hold "
                  f"{b.buy_and_hold_return:+.1%}; CAGR {b.cagr:+.1%}, Sharpe {b.sharpe:.2f}, Sortino {b.sortino:.2f}, "
                  f"max drawdown {b.max_drawdown:.1%}, {b.trades} trades, hit rate {b.hit_rate:.0%}, exposure "
                  f"{b.exposure:.0%} (fees {b.fee_bps:g} bps, slippage {b.slippage_bps:g} bps)", highlight=False)
    for warning in report.warnings:
        console.print(f"[yellow]note:[/yellow] {warning}", highlight=False)
