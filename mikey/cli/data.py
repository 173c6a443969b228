"""``mikey data ...``: backfill candles, run ingestion, show what is stored. Heavy modules load inside commands."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer

from mikey.cli.common import load_settings, utc_day
from mikey.errors import InvalidInput

data_app = typer.Typer(help="Market data: backfill history, run ingestion, show stored candles.", no_args_is_help=True)

Interval = typer.Option("--interval", "-i", help="Candle interval: 1m, 1h or 1d.")


def _interval(value: str) -> str:
    if value not in ("1m", "1h", "1d"):
        raise InvalidInput(f"--interval must be 1m, 1h or 1d, got {value!r}")
    return value


@data_app.command()
def backfill(
    symbol: Annotated[str, typer.Argument(help="Market, e.g. SOL.")],
    start: Annotated[str, typer.Option("--from", help="First day, YYYY-MM-DD.")],
    end: Annotated[str, typer.Option("--to", help="Last day, YYYY-MM-DD (inclusive).")],
    interval: Annotated[str, Interval] = "1d",
    source: Annotated[str, typer.Option("--source", help="replay (bundled history) or pyth (benchmarks).")] = "replay",
) -> None:
    """Load historical candles into the market store (idempotent: running it twice changes nothing)."""
    from rich.progress import Progress

    from mikey.market import symbols
    from mikey.market.store import open_store

    settings = load_settings()
    market = symbols.resolve(symbol)
    first, last = utc_day(start, "--from"), utc_day(end, "--to") + timedelta(days=1)
    interval = _interval(interval)
    if first >= last:
        raise InvalidInput("--from must not be after --to")
    store = open_store(settings)
    written = fetched = 0
    try:
        windows = _windows(first, last, interval)
        with Progress(transient=True) as progress:
            task = progress.add_task(f"backfill {market} {interval} from {source}", total=len(windows))
            for lo, hi in windows:
                bars, name = _fetch(settings, source, market, interval, lo, hi)
                fetched += len(bars)
                written += store.upsert_candles(bars, interval=interval, source=name)
                progress.advance(task)
    finally:
        store.close()
    typer.echo(f"{market} {interval}: {fetched} candles fetched, {written} new or changed rows stored")


def _windows(first: datetime, last: datetime, interval: str) -> list[tuple[datetime, datetime]]:
    """Request windows small enough for one history call each (about 5,000 bars)."""
    span = {"1m": timedelta(days=3), "1h": timedelta(days=200), "1d": timedelta(days=5000)}[interval]
    out, lo = [], first
    while lo < last:
        out.append((lo, min(lo + span, last)))
        lo += span
    return out


def _fetch(settings, source: str, market: str, interval: str, lo: datetime, hi: datetime):  # noqa: ANN001, ANN202
    if source == "replay":
        if interval != "1d":
            raise InvalidInput("the bundled replay history is daily: use --interval 1d")
        from mikey.market.replay import ReplayFeed

        feed = ReplayFeed(settings.replay_dir)
        return [c for c in feed.candles(market, start=lo) if c.ts < hi], "replay"
    if source == "pyth":
        from mikey.market.pyth import BenchmarksClient

        with BenchmarksClient(settings.pyth_benchmarks_url, settings.pyth_api_key,
                              timeout=settings.http_timeout) as client:
            return client.history(market, interval, lo, hi), "pyth"
    raise InvalidInput(f"--source must be replay or pyth, got {source!r}")


@data_app.command()
def ingest(
    once: Annotated[bool, typer.Option("--once", help="One round of every collector, then a summary.")] = False,
    symbol: Annotated[list[str] | None, typer.Option("--symbol", "-s", help="Markets (default: all).")] = None,
) -> None:
    """Run the ingestion pipeline: prices (replay or Pyth), news and social, validated, stored and published."""
    import asyncio

    from mikey.alerts.watch import AlertWatcher, IngestAlerts
    from mikey.market import symbols as names
    from mikey.market.collectors import build_collectors
    from mikey.market.events import InProcessBus, RedisStreamBus
    from mikey.market.pipeline import IngestService
    from mikey.market.store import open_store

    settings = load_settings()
    markets = [names.resolve(s) for s in symbol] if symbol else list(names.SUPPORTED)
    store = open_store(settings)
    try:
        collectors, clients = build_collectors(settings, markets, store)  # the replay resumes after what is stored
    except BaseException:
        store.close()
        raise
    bus = RedisStreamBus(settings.redis_url) if settings.redis_url else InProcessBus()
    watcher = AlertWatcher.from_settings(settings, echo=typer.echo)  # every user's rules, on each batch of quotes
    service = IngestService(collectors, store, bus, settings, observers=[IngestAlerts(watcher, store)])

    for c in collectors:
        for market, last in sorted(getattr(c, "resume", {}).items()):
            typer.echo(f"{c.name} {market}: resuming after {last:%Y-%m-%d %H:%M} UTC, the last bar stored")

    async def main() -> None:
        if once:
            await service.run_once()
            return
        stop = asyncio.Event()
        typer.echo(f"ingesting {', '.join(markets)} with {', '.join(c.name for c in collectors)}; Ctrl-C stops")
        try:
            await service.run(stop)
        except asyncio.CancelledError:
            stop.set()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
    finally:
        watcher.close()
        for client in clients:
            client.close()
        store.close()
    _summary(service)


def _summary(service) -> None:  # noqa: ANN001
    from rich.console import Console
    from rich.table import Table

    table = Table(title="Ingestion")
    for column in ("collector", "runs", "items", "stored", "rejected", "errors", "last error"):
        table.add_column(column)
    for name, s in service.stats.items():
        table.add_row(name, str(s.runs), str(s.items), str(s.stored), str(s.rejected), str(s.errors),
                      s.last_error or "-")
    Console().print(table)


@data_app.command()
def show(
    symbol: Annotated[str, typer.Argument(help="Market, e.g. SOL.")],
    interval: Annotated[str, Interval] = "1d",
    start: Annotated[str | None, typer.Option("--from", help="First day, YYYY-MM-DD.")] = None,
    end: Annotated[str | None, typer.Option("--to", help="Last day, YYYY-MM-DD (inclusive).")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="Rows to print (the newest).")] = 20,
    chart: Annotated[str | None, typer.Option("--chart", help="Also draw a candle chart to this PNG file.")] = None,
) -> None:
    """Show stored candles of a market as a table, and optionally a PNG candle chart."""
    from rich.console import Console
    from rich.table import Table

    from mikey.market import symbols
    from mikey.market.store import open_store

    settings = load_settings()
    market = symbols.resolve(symbol)
    interval = _interval(interval)
    if chart:
        from mikey.market.chart import chart_path

        chart_path(chart)  # a folder that does not exist is refused before the table, not after it
    lo = utc_day(start, "--from") if start else datetime(1970, 1, 1, tzinfo=UTC)
    hi = utc_day(end, "--to") + timedelta(days=1) if end else datetime(9999, 1, 1, tzinfo=UTC)
    store = open_store(settings)
    try:
        bars = store.candles(market, interval, lo, hi)
    finally:
        store.close()
    if not bars:
        raise InvalidInput(f"no {interval} candles stored for {market} in that range; run: mikey data backfill "
                           f"{market} --from ... --to ...")
    table = Table(title=f"{market} {interval} candles ({len(bars)} stored, newest {min(limit, len(bars))} shown)")
    for column in ("time (UTC)", "open", "high", "low", "close", "volume"):
        table.add_column(column, justify="left" if column.startswith("time") else "right")
    for c in bars[-limit:]:
        table.add_row(c.ts.strftime("%Y-%m-%d %H:%M"), str(c.open), str(c.high), str(c.low), str(c.close),
                      str(c.volume))
    Console().print(table)
    if chart:
        from mikey.market.chart import candle_chart

        candle_chart(bars, f"{market} {interval}", chart)
        typer.echo(f"chart written to {chart}")
