"""``mikey risk assess``: the risk of one perpetual position, as a table or JSON.

Heavy modules (pandas, the risk engine) load inside the command, so ``mikey --help`` stays light.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mikey.cli.common import load_settings
from mikey.errors import InvalidInput

if TYPE_CHECKING:
    from mikey.domain import PositionInput, RiskAssessment

risk_app = typer.Typer(help="Risk of a perpetual position: liquidation, VaR/CVaR, volatility, score, limit checks.",
                       no_args_is_help=True)


@risk_app.command("assess")
def assess(
    input_path: Annotated[Path, typer.Option("--input", "-i", help="Position as JSON: market, side, size, collateral,"
                                             " and optionally entry_price, leverage, margin_mode,"
                                             " maintenance_margin_ratio, maintenance_amount, returns.")],
    history: Annotated[Path | None, typer.Option("--history", help="Market-risk figures from this OHLCV CSV (its last"
                                                 " 365 bars) instead of the feed's daily candles; any market"
                                                 " symbol.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the assessment as JSON (the API's response).")]
    = False,
) -> None:
    """Assess one position: liquidation price and distance, margin ratio, VaR/CVaR, volatility, drawdown, a 0-100
    score with its factors, recommended maximum size, pre-trade checks and alerts."""
    from mikey.tools.risk import assess_with_history, history_from_feed, history_from_frame

    position = read_position(input_path)
    if history is not None:
        from mikey.analysis.ohlcv import load_ohlcv_csv
        from mikey.market import symbols

        if not history.is_file():
            raise InvalidInput(f"--history file not found: {history}")
        bars = history_from_frame(load_ohlcv_csv(history), symbols.resolve_own(position.market),  # the user's data
                                  source=f"csv:{history.name}")
    else:
        from mikey.market.feeds import open_feed

        bars = history_from_feed(open_feed(load_settings()), position.market)
    result = assess_with_history(position, bars)
    if as_json:
        typer.echo(result.model_dump_json(indent=2))
    else:
        _print(result, bars.source)


def read_position(path: Path) -> PositionInput:
    """The position in a JSON file; ``InvalidInput`` names the file, the field and the reason when it is not valid."""
    from pydantic import ValidationError

    from mikey.domain import PositionInput

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"--input {path}: cannot read ({exc.strerror or exc})") from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"--input {path}: not a JSON text file (byte {exc.start} is {data[exc.start]:#04x}, not "
                           "UTF-8)") from exc
    try:
        return PositionInput.model_validate_json(text)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'position'}: {e['msg']}" for e in exc.errors())
        raise InvalidInput(f"{path.name}: {problems}") from exc


def _print(result: RiskAssessment, source: str) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    level = {"LOW": "green", "MEDIUM": "yellow", "HIGH": "red", "CRITICAL": "bold red"}[result.risk_level]
    console.print(f"[bold]{result.market}[/bold] {result.side} {result.size:g} @ {result.entry_price:.10g} USD "
                  f"(notional {result.notional:,.2f}, collateral {result.collateral:,.2f}, leverage "
                  f"{result.leverage:.2f}x) as of {result.as_of:%Y-%m-%d %H:%M} UTC, "
                  f"{result.history_bars} bars from {source}", highlight=False)
    console.print(f"risk score [{level}]{result.risk_score:.1f} {result.risk_level}[/{level}]", highlight=False)
    figures = Table(title="figures")
    figures.add_column("figure")
    figures.add_column("value", justify="right")
    liquidation = "none" if result.liquidation_price is None else f"{result.liquidation_price:.8g}"
    distance = "-" if result.distance_to_liquidation_pct is None else f"{result.distance_to_liquidation_pct:.2f}%"
    for name, value in (
        ("liquidation price", liquidation),
        ("distance to liquidation", distance),
        ("margin ratio", f"{result.margin_ratio:.2%}"),
        ("VaR 95% / CVaR 95% (1 day)", f"{result.var_95:.2%} / {result.cvar_95:.2%}"),
        ("VaR 99% / CVaR 99% (1 day)", f"{result.var_99:.2%} / {result.cvar_99:.2%}"),
        ("parametric VaR 95% / 99%", f"{result.parametric_var_95:.2%} / {result.parametric_var_99:.2%}"),
        ("volatility (annualised)", f"{result.volatility_annualized:.2%}"),
        ("EWMA volatility (annualised)", f"{result.ewma_volatility_annualized:.2%}"),
        ("max drawdown", f"{result.max_drawdown:.2%}"),
        ("recommended max size", f"{result.recommended_max_size:.6g}"),
    ):
        figures.add_row(name, value)
    console.print(figures)
    if result.factors:
        factors = Table(title="score factors (points sum to the score)")
        for column in ("factor", "value", "points", "reason"):
            factors.add_column(column, justify="right" if column in ("value", "points") else "left")
        for f in result.factors:
            factors.add_row(f.name, f"{f.value:.6g}", f"{f.points:.1f}", f.reason)
        console.print(factors)
    if result.checks:
        checks = Table(title="pre-trade checks")
        for column in ("check", "result", "value", "limit", "detail"):
            checks.add_column(column)
        for c in result.checks:
            mark = "[green]pass[/green]" if c.passed else "[red]FAIL[/red]"
            checks.add_row(c.name, mark, _num(c.value), _num(c.limit), c.detail)
        console.print(checks)
    for alert in result.alerts:
        colour = {"info": "cyan", "warning": "yellow", "critical": "red"}[alert.severity]
        console.print(f"[{colour}]{alert.severity}:[/{colour}] {alert.message}", highlight=False)
    for reason in result.reasons:
        console.print(f"- {reason}", highlight=False)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"
