"""The ingestion service: collectors on schedules -> validation -> normalised rows in the store -> events on a bus.

Each collector runs in its own task at its interval. A failing collector backs off exponentially (doubling from its
interval up to ``max_backoff``) and recovers on its own; it never stops the others. Every quote passes validation
against the last valid quote of its market and source before it is stored; a rejected quote is stored apart with its
reasons, counted, and published as a rejection event, never as a price. Stored quotes roll up into 1m/1h/1d candles:
each bar a round touched is rebuilt from the stored quotes of its source, so re-ingesting changes nothing.
Then each ``QuoteObserver`` given at the composition root sees the batch of valid quotes (the alert rules:
``alerts.watch.IngestAlerts``), in a worker thread; an observer's ``MikeyError`` is logged, not raised.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol

from mikey.domain import Candle, NewsItem, Quote, SocialPost
from mikey.errors import MikeyError
from mikey.market import validation
from mikey.market.events import EventBus, wrap
from mikey.market.normalize import INTERVALS, aggregate, bucket_start
from mikey.settings import Settings

log = logging.getLogger(__name__)

Item = Quote | NewsItem | SocialPost


class Collector(Protocol):
    """A source polled on a schedule. ``collect`` returns normalised items; it raises ``MikeyError`` on failure."""

    name: str
    interval: float

    async def collect(self) -> Sequence[Item]: ...


class QuoteObserver(Protocol):
    """Told of every batch of valid quotes once they and their candles are stored (blocking: run in a thread)."""

    def on_quotes(self, quotes: Sequence[Quote]) -> None: ...


@dataclass
class CollectorStats:
    runs: int = 0
    items: int = 0
    stored: int = 0
    rejected: int = 0
    errors: int = 0
    consecutive_errors: int = 0
    last_error: str | None = None
    rejections: dict[str, int] = field(default_factory=dict)


class IngestService:
    """Runs collectors, validates and stores what they bring, and publishes it."""

    def __init__(self, collectors: Sequence[Collector], store: Any, bus: EventBus, settings: Settings, *,
                 max_backoff: float = 300.0, clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 observers: Sequence[QuoteObserver] = ()) -> None:
        self.collectors = list(collectors)
        self.observers = list(observers)
        self.store = store
        self.bus = bus
        self.settings = settings
        self.max_backoff = max_backoff
        self.clock = clock
        self.sleep = sleep
        self.stats: dict[str, CollectorStats] = {c.name: CollectorStats() for c in self.collectors}
        self._last_valid: dict[tuple[str, str], Quote] = {}

    async def run_once(self) -> dict[str, CollectorStats]:
        """One round of every collector, concurrently; errors are counted, not raised."""
        await asyncio.gather(*(self._round(c) for c in self.collectors))
        return self.stats

    async def run(self, stop: asyncio.Event) -> dict[str, CollectorStats]:
        """Every collector on its schedule, with backoff on failure, until ``stop`` is set."""
        await asyncio.gather(*(self._loop(c, stop) for c in self.collectors))
        return self.stats

    def delay(self, collector: Collector) -> float:
        """Seconds until the collector's next round: its interval, doubled for each consecutive failure."""
        failures = self.stats[collector.name].consecutive_errors
        return min(self.max_backoff, collector.interval * (2 ** min(failures, 30))) if failures else collector.interval

    async def _loop(self, collector: Collector, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self._round(collector)
            try:
                await asyncio.wait_for(stop.wait(), timeout=self.delay(collector))
            except TimeoutError:
                pass

    async def _round(self, collector: Collector) -> None:
        stats = self.stats[collector.name]
        stats.runs += 1
        try:
            items = await collector.collect()
            await self._handle(collector, items, stats)
        except MikeyError as exc:
            stats.errors += 1
            stats.consecutive_errors += 1
            stats.last_error = str(exc)
            log.warning("collector %s failed (%d in a row): %s", collector.name, stats.consecutive_errors, exc)
            return
        stats.consecutive_errors = 0

    async def _handle(self, collector: Collector, items: Sequence[Item], stats: CollectorStats) -> None:
        stats.items += len(items)
        quotes = [i for i in items if isinstance(i, Quote)]
        valid: list[Quote] = []
        now = getattr(collector, "now", self.clock)
        for quote in quotes:
            key = (quote.symbol, quote.source)
            check = validation.check(quote, now=now(), settings=self.settings, last_valid=self._last_valid.get(key),
                                     reference=self._reference(quote))
            if check.valid:
                valid.append(quote)
                self._last_valid[key] = quote
            else:
                stats.rejected += 1
                for reason in check.reasons:
                    stats.rejections[reason] = stats.rejections.get(reason, 0) + 1
                await asyncio.to_thread(self.store.record_rejection, check)
                await self.bus.publish(wrap(check))
        groups: list[tuple[Callable[[list[Any]], int], list[Any]]] = [
            (self.store.upsert_quotes, valid),
            (self.store.upsert_news, [i for i in items if isinstance(i, NewsItem)]),
            (self.store.upsert_posts, [i for i in items if isinstance(i, SocialPost)]),
        ]
        for upsert, batch in groups:
            if batch:
                stats.stored += await asyncio.to_thread(upsert, batch)
                for item in batch:
                    await self.bus.publish(wrap(item))
        if valid:
            for candle in await asyncio.to_thread(self._roll_up, valid):
                await self.bus.publish(wrap(candle))
            for observer in self.observers:
                try:
                    await asyncio.to_thread(observer.on_quotes, valid)
                except MikeyError as exc:
                    log.warning("quote observer %s failed: %s", type(observer).__name__, exc)

    def _reference(self, quote: Quote) -> Quote | None:
        """The freshest valid quote of the same market from another source, if it is close enough in time to compare
        (Pyth against Switchboard, say); the divergence rule needs it."""
        window = self.settings.max_staleness_seconds
        others = [q for (symbol, source), q in self._last_valid.items()
                  if symbol == quote.symbol and source != quote.source
                  and abs((q.as_of - quote.as_of).total_seconds()) <= window]
        return max(others, key=lambda q: q.as_of, default=None)

    def _roll_up(self, quotes: list[Quote]) -> list[Candle]:
        """Rebuild every 1m/1h/1d bar these quotes fall in, each level from the one below it: a 1m bar from the stored
        quotes of its minute (of the quotes' source), a 1h bar from its 1m bars, a 1d bar from its 1h bars. So a round
        reads at most a minute of quotes, 60 and 24 bars, however long the pipeline has run."""
        rebuilt: list[Candle] = []
        below: str | None = None
        for interval, step in INTERVALS.items():
            touched = {(q.symbol, q.source, bucket_start(q.as_of, interval)) for q in quotes}
            for symbol, source, start in sorted(touched):
                if below is None:
                    stored = [q for q in self.store.quotes(symbol, start, start + step) if q.source == source]
                    bars = aggregate(stored, interval)
                else:
                    bars = [_merge(self.store.candles(symbol, below, start, start + step), start)]
                self.store.upsert_candles(bars, interval=interval, source=source)
                rebuilt += bars
            below = interval
        return rebuilt


def _merge(bars: Sequence[Candle], start: datetime) -> Candle:
    """One bar from consecutive bars (oldest first): first open, last close, extremes, summed volume."""
    return Candle(symbol=bars[0].symbol, ts=start, open=bars[0].open, high=max(b.high for b in bars),
                  low=min(b.low for b in bars), close=bars[-1].close, volume=sum((b.volume for b in bars), Decimal(0)))


class ReplayCollector:
    """Replays bundled history as live quotes: each round emits the next bar of every symbol.

    Its clock is the replayed bar's time, so validation judges staleness in replay time, not wall time. ``resume``
    maps a market to the last bar already ingested (``replay_resume``): that market's replay goes on after it, so an
    ingestion killed mid-way continues where it stopped instead of starting the history again.
    """

    def __init__(self, feed: Any, symbols: Sequence[str], interval: float = 1.0, start: datetime | None = None,
                 resume: Mapping[str, datetime] | None = None):
        self.name = "replay"
        self.interval = interval
        self.resume = dict(resume or {})
        quotes = feed.replay(list(symbols), start=start)  # from the first bar, so each prev_close is the stored one
        self._quotes = (q for q in quotes if q.symbol not in self.resume or q.as_of > self.resume[q.symbol])
        self._batch = len(symbols)
        self._now = datetime.min.replace(tzinfo=UTC)

    def now(self) -> datetime:
        return self._now

    async def collect(self) -> Sequence[Item]:
        quotes = list(itertools.islice(self._quotes, self._batch))
        if quotes:
            self._now = max(self._now, *(q.as_of for q in quotes))
        return quotes


def replay_resume(store: Any, feed: Any, symbols: Sequence[str]) -> dict[str, datetime]:
    """Per market, the open time of the last daily bar the store holds from ``feed``'s replay, if any.

    The 1d bar is the last thing a round writes for a quote (quote, then its 1m, 1h and 1d bars), so a bar whose
    round a kill cut short has no 1d bar yet and is replayed again: storing it twice changes nothing.
    """
    found = {s: store.latest_candle_time(s, "1d", source=feed.source(s)) for s in symbols}
    return {s: t for s, t in found.items() if t is not None}


class ThreadCollector:
    """Wraps a blocking fetch (an httpx client call) as a collector run in a worker thread."""

    def __init__(self, name: str, fetch: Callable[[], Sequence[Item]], interval: float) -> None:
        self.name = name
        self.interval = interval
        self._fetch = fetch

    async def collect(self) -> Sequence[Item]:
        return await asyncio.to_thread(self._fetch)
