"""Market store throughput and latency (issue 4), measured in one run: SQLite always, PostgreSQL with ``--pg URL``.

Usage: python benchmarks/market_store.py [--pg postgresql://user@127.0.0.1:5432/db] [--quotes 200000] [--batch 1000]
           [--day-windows 1000] [--week-windows 200]

Per backend it prints quote ingest (new rows) and re-ingest (the same rows again, idempotent) throughput in
batched upserts, the load of one year of 1-minute candles of one symbol (525,600 rows), and p50/p99 latency of
random 1-day and 1-week range reads over that year (each read returns the rows as ``Candle`` models). SQLite runs
with the store's ``synchronous=FULL``; one extra line shows the ingest cost it adds over NORMAL.
PostgreSQL work happens in a scratch schema that is dropped afterwards, so pointing it at a real database is safe.
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote as urlquote

from mikey.domain import Candle, Quote
from mikey.market.store import SqlMarketStore, open_store
from mikey.settings import Settings

T0 = datetime(2024, 1, 1, tzinfo=UTC)
YEAR_MINUTES = 525_600


def make_quotes(n: int) -> list[Quote]:
    """Three markets, one Pyth-like quote per market per second, prices with real-world digits."""
    return [Quote(symbol=("SOL", "BTC", "ETH")[i % 3], source="pyth", as_of=T0 + timedelta(seconds=i // 3),
                  price=Decimal(f"{61000 + i % 5000}.{i % 100000:05d}"), conf=Decimal(f"1.{i % 1000:03d}"),
                  ema_price=Decimal(f"{61000 + i % 4999}.5")) for i in range(n)]


def candle_batches(size: int) -> Iterator[list[Candle]]:
    """One year of 1-minute SOL bars, built batch by batch so the reads below run without 525,600 live models."""
    for first in range(0, YEAR_MINUTES, size):
        batch = []
        for i in range(first, min(first + size, YEAR_MINUTES)):
            c = Decimal(f"{100 + i % 700}.{i % 10000:04d}")
            batch.append(Candle(symbol="SOL", ts=T0 + timedelta(minutes=i), open=c, high=c + 1, low=c - 1, close=c,
                                volume=Decimal(f"{i % 99991}.25")))
        yield batch


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:>10,.0f}/s  ({n:,} in {seconds:.2f} s)"


def ingest(store: SqlMarketStore, quotes: list[Quote], batch: int) -> tuple[int, float]:
    start = time.perf_counter()
    inserted = sum(store.upsert_quotes(quotes[i:i + batch]) for i in range(0, len(quotes), batch))
    return inserted, time.perf_counter() - start


def percentile(xs: list[float], p: float) -> float:
    ordered = sorted(xs)
    return ordered[min(len(ordered) - 1, round(p * (len(ordered) - 1)))] * 1000


def range_reads(store: SqlMarketStore, span: timedelta, n: int, rng: random.Random) -> str:
    slots = YEAR_MINUTES - int(span / timedelta(minutes=1))
    times, rows = [], 0
    for _ in range(n):
        start = T0 + timedelta(minutes=rng.randrange(slots))
        t = time.perf_counter()
        got = store.candles("SOL", "1m", start, start + span)
        times.append(time.perf_counter() - t)
        rows += len(got)
    return (f"p50 {percentile(times, 0.5):7.2f} ms  p99 {percentile(times, 0.99):7.2f} ms  "
            f"({n} windows, {rows // n:,} rows each)")


def run(name: str, store: SqlMarketStore, args: argparse.Namespace, sqlite_normal: SqlMarketStore | None = None
        ) -> None:
    print(f"\n[{name}]")
    quotes = make_quotes(args.quotes)
    inserted, seconds = ingest(store, quotes, args.batch)
    assert inserted == len(quotes), inserted
    print(f"quote ingest, batches of {args.batch:<6}   {rate(len(quotes), seconds)}")
    again, seconds = ingest(store, quotes, args.batch)
    assert again == 0 and store.counts()["quotes"] == len(quotes)
    print(f"quote re-ingest (idempotent, 0 new)  {rate(len(quotes), seconds)}")
    if sqlite_normal is not None:
        _, seconds = ingest(sqlite_normal, quotes, args.batch)
        print(f"quote ingest, synchronous=NORMAL     {rate(len(quotes), seconds)}  (comparison only)")
    del quotes
    spent = 0.0
    for batch in candle_batches(10_000):  # only the upserts are timed
        start = time.perf_counter()
        store.upsert_candles(batch, interval="1m", source="pyth")
        spent += time.perf_counter() - start
    assert store.counts()["candles"] == YEAR_MINUTES
    print(f"1m candle load, batches of 10000     {rate(YEAR_MINUTES, spent)}")
    gc.collect()
    rng = random.Random(4)
    store.candles("SOL", "1m", T0, T0 + timedelta(days=1))  # warm caches and prepared statements
    print(f"range read, 1-day window             {range_reads(store, timedelta(days=1), args.day_windows, rng)}")
    print(f"range read, 1-week window            {range_reads(store, timedelta(days=7), args.week_windows, rng)}")


@contextmanager
def pg_scratch(url: str) -> Iterator[str]:
    """A URL whose search_path is a fresh schema, dropped on exit."""
    import psycopg

    schema = f"mikey_bench_{os.getpid()}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        sep = "&" if "?" in url else "?"
        yield f"{url}{sep}options={urlquote(f'-c search_path={schema}')}"
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pg", help="PostgreSQL URL; benchmarked in a scratch schema")
    parser.add_argument("--quotes", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--day-windows", type=int, default=1000)
    parser.add_argument("--week-windows", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        with (open_store(Settings(home=Path(tmp) / "full")) as store,
              open_store(Settings(home=Path(tmp) / "normal"), synchronous="NORMAL") as normal):
            run("sqlite (WAL, synchronous=FULL)", store, args, sqlite_normal=normal)
        if args.pg:
            with pg_scratch(args.pg) as url, open_store(Settings(home=Path(tmp), database_url=url)) as store:
                run("postgresql", store, args)


if __name__ == "__main__":
    main()
