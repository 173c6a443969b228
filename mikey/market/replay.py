"""Replay feed over bundled real daily history: MIKEY's offline, embedded default.

The clock is an as-of date: "now" is that date's bar, or the last bar when no date is set. Nothing after the
clock is ever visible, so a replayed session sees the market as it was.
"""

from __future__ import annotations

import asyncio
import csv
import math
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime, time
from decimal import Decimal, InvalidOperation
from functools import cached_property
from importlib import resources
from pathlib import Path

from mikey.domain import Candle, Quote
from mikey.errors import DataUnavailable, UnknownSymbol
from mikey.market import symbols as symbol_names

FILE_PATTERN = "{symbol}-USD.daily.csv"


def bundled_data_dir() -> Path:
    """Folder of the history files that ship inside the package."""
    return Path(str(resources.files("mikey.market") / "data"))


def read_daily_csv(path: Path, symbol: str) -> list[Candle]:
    """Parse a Yahoo-style daily export (Date,Open,High,Low,Close,...,Volume) into candles, oldest first.

    Values are parsed from their text as Decimal, so they are exactly the file's. Raises ``DataUnavailable`` naming
    the file and line for a missing column, an unparsable value, or dates out of order.
    """
    candles: list[Candle] = []
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        header = {(name or "").strip().lower(): name for name in reader.fieldnames or []}
        missing = [c for c in ("date", "open", "high", "low", "close", "volume") if c not in header]
        if missing:
            raise DataUnavailable(f"{path.name}: missing column(s) {', '.join(missing)}")
        for row in reader:
            line = reader.line_num  # the file's own line number, blank lines included
            try:
                day = date.fromisoformat(row[header["date"]].strip())
                o, h, lo, c, v = (Decimal(row[header[k]].strip()) for k in ("open", "high", "low", "close", "volume"))
            except (ValueError, InvalidOperation, AttributeError) as exc:
                raise DataUnavailable(f"{path.name} line {line}: unparsable row ({exc})") from exc
            if not all(x.is_finite() for x in (o, h, lo, c, v)):
                raise DataUnavailable(f"{path.name} line {line}: non-finite value (NaN or infinity)")
            ts = datetime.combine(day, time(0), tzinfo=UTC)
            if candles and ts <= candles[-1].ts:
                raise DataUnavailable(f"{path.name} line {line}: date {day} is not after the previous row")
            candles.append(Candle(symbol=symbol, ts=ts, open=o, high=h, low=lo, close=c, volume=v))
    if not candles:
        raise DataUnavailable(f"{path.name}: no rows")
    return candles


class ReplayFeed:
    """A ``PriceFeed`` that replays daily bars from CSV files, up to an as-of date."""

    name = "replay"

    def __init__(self, data_dir: Path | None = None, as_of: date | None = None) -> None:
        self.data_dir = data_dir or bundled_data_dir()
        self.as_of = as_of
        self._cache: dict[str, list[Candle]] = {}

    @cached_property
    def _files(self) -> dict[str, Path]:
        found = {}
        for symbol in symbol_names.SUPPORTED:
            path = self.data_dir / FILE_PATTERN.format(symbol=symbol)
            if path.is_file():
                found[symbol] = path
        return found

    def symbols(self) -> list[str]:
        return sorted(self._files)

    def source(self, symbol: str) -> str:
        """The ``source`` of the quotes of ``symbol``: the file they are replayed from."""
        if symbol not in self._files:
            raise UnknownSymbol(symbol, self.symbols())
        return f"replay:{self._files[symbol].name}"

    def _history(self, symbol: str) -> list[Candle]:
        if symbol not in self._files:
            raise UnknownSymbol(symbol, self.symbols())
        if symbol not in self._cache:
            self._cache[symbol] = read_daily_csv(self._files[symbol], symbol)
        return self._cache[symbol]

    def now(self, symbol: str) -> datetime:
        """The clock for ``symbol``: the as-of date's bar, else the last bar."""
        history = self._history(symbol)
        if self.as_of is None:
            return history[-1].ts
        clock = datetime.combine(self.as_of, time(0), tzinfo=UTC)
        if clock < history[0].ts:
            raise DataUnavailable(
                f"no {symbol} data on or before {self.as_of}; replay history starts {history[0].ts.date()}"
            )
        return min(clock, history[-1].ts)

    def candles(self, symbol: str, *, start: datetime | None = None, end: datetime | None = None) -> list[Candle]:
        clock = self.now(symbol)
        end = clock if end is None else min(end, clock)
        return [c for c in self._history(symbol) if c.ts <= end and (start is None or c.ts >= start)]

    def quote(self, symbol: str) -> Quote:
        bars = self.candles(symbol)
        last = bars[-1]
        prev = bars[-2].close if len(bars) > 1 else None
        return Quote(symbol=symbol, price=last.close, as_of=last.ts, prev_close=prev,
                     source=self.source(symbol))

    def replay(self, symbols: list[str], *, start: datetime | None = None) -> Iterator[Quote]:
        """Bars as quotes in time order (ties by symbol), from ``start`` up to the clock."""
        bars = sorted((c for s in symbols for c in self.candles(s, start=start)), key=lambda c: (c.ts, c.symbol))
        previous: dict[str, Candle] = {}
        for bar in bars:
            prev = previous.get(bar.symbol)
            previous[bar.symbol] = bar
            yield Quote(symbol=bar.symbol, price=bar.close, as_of=bar.ts, prev_close=prev.close if prev else None,
                        source=self.source(bar.symbol))

    async def stream(self, symbols: list[str], *, start: datetime | None = None,
                     speed: float = math.inf) -> AsyncIterator[Quote]:
        """``replay`` paced ``speed`` times faster than market time (86,400 replays one daily bar per second).

        The default, infinite speed, replays without waiting.
        """
        last: datetime | None = None
        for quote in self.replay(symbols, start=start):
            if last is not None and quote.as_of > last and math.isfinite(speed):
                await asyncio.sleep((quote.as_of - last).total_seconds() / speed)
            last = quote.as_of
            yield quote
