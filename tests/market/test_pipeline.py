"""The ingestion service end to end: collectors, validation, store and events, with failures that must not stop it."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from mikey.domain import Quote
from mikey.errors import FeedError
from mikey.market.events import Envelope, InProcessBus, RedisStreamBus, wrap
from mikey.market.pipeline import IngestService, ReplayCollector, ThreadCollector, replay_resume
from mikey.market.replay import ReplayFeed
from mikey.market.store import open_store

T0 = datetime(2024, 5, 3, 14, 21, 41, tzinfo=UTC)


@pytest.fixture
def store(settings):
    store = open_store(settings)
    yield store
    store.close()


class Scripted:
    """A collector that raises or returns, one scripted step per round (the last step repeats)."""

    def __init__(self, name: str, steps: Sequence[object], interval: float = 0.01) -> None:
        self.name, self.interval, self.steps, self.rounds = name, interval, list(steps), 0

    async def collect(self):
        step = self.steps[min(self.rounds, len(self.steps) - 1)]
        self.rounds += 1
        if isinstance(step, Exception):
            raise step
        return step


def quote(price: str, at: datetime = T0, source: str = "pyth", conf: str = "1") -> Quote:
    return Quote(symbol="BTC", price=Decimal(price), as_of=at, source=source, conf=Decimal(conf))


async def drain(bus: InProcessBus, events: list[Envelope], ready: asyncio.Event) -> None:
    stream = bus.subscribe()
    ready.set()
    async for envelope in stream:
        events.append(envelope)


def run_with_listener(service: IngestService, bus: InProcessBus, body) -> list[Envelope]:
    events: list[Envelope] = []

    async def main() -> None:
        ready = asyncio.Event()
        listener = asyncio.create_task(drain(bus, events, ready))
        await ready.wait()
        await asyncio.sleep(0)  # let the listener register its queue
        await body(service)
        await asyncio.sleep(0.01)
        listener.cancel()

    asyncio.run(main())
    return events


def test_replay_ingestion_stores_exact_closes_candles_and_events(settings, store) -> None:
    feed = ReplayFeed()
    bus = InProcessBus()
    service = IngestService([ReplayCollector(feed, ["SOL"], interval=0)], store, bus, settings)

    async def body(svc: IngestService) -> None:
        for _ in range(5):
            await svc.run_once()

    events = run_with_listener(service, bus, body)
    expected = feed.candles("SOL")[:5]
    stored = store.quotes("SOL", expected[0].ts, expected[-1].ts.replace(hour=1))
    assert [q.price for q in stored] == [c.close for c in expected]  # exact Decimal closes of the file
    daily = store.candles("SOL", "1d", expected[0].ts, expected[-1].ts.replace(hour=1))
    assert [(c.open, c.close) for c in daily] == [(c.close, c.close) for c in expected]  # one quote per bar
    kinds = [e.event.kind for e in events]
    assert kinds.count("quote") == 5 and kinds.count("candle") == 15  # 1m, 1h and 1d bar per quote
    assert service.stats["replay"].stored == 5 and service.stats["replay"].rejected == 0


def test_reingesting_changes_nothing(settings, store) -> None:
    for _ in range(2):
        service = IngestService([ReplayCollector(ReplayFeed(), ["BTC", "ETH"], interval=0)], store,
                                InProcessBus(), settings)
        asyncio.run(service.run_once())
        asyncio.run(service.run_once())
    assert store.counts()["quotes"] == 4


def test_replay_resumes_after_the_last_stored_daily_bar(settings, store) -> None:
    """A second ingestion goes on where the first stopped; a bar whose 1d roll-up a kill cut short is done again."""
    feed = ReplayFeed()
    bars = {s: feed.candles(s)[:6] for s in ("BTC", "SOL")}
    first = IngestService([ReplayCollector(feed, ["BTC", "SOL"], interval=0)], store, InProcessBus(), settings)
    for _ in range(4):
        asyncio.run(first.run_once())
    # as if killed after storing SOL's fifth quote, before its candles were rolled up
    store.upsert_quotes([q for q in feed.replay(["SOL"]) if q.as_of == bars["SOL"][4].ts])
    resume = replay_resume(store, feed, ["BTC", "SOL", "ETH"])
    assert resume == {"BTC": bars["BTC"][3].ts, "SOL": bars["SOL"][3].ts}  # ETH: nothing stored, from its start

    peek = asyncio.run(ReplayCollector(ReplayFeed(), ["BTC", "SOL"], resume=resume).collect())
    assert [(q.symbol, q.as_of, q.prev_close) for q in peek] == [
        (s, bars[s][4].ts, bars[s][3].close) for s in ("BTC", "SOL")]  # the next bar, priced against the stored one
    again = ReplayCollector(ReplayFeed(), ["BTC", "SOL"], interval=0, resume=resume)
    service = IngestService([again], store, InProcessBus(), settings)
    asyncio.run(service.run_once())
    assert service.stats["replay"].items == 2 and service.stats["replay"].rejected == 0
    for symbol in ("BTC", "SOL"):
        stored = store.quotes(symbol, bars[symbol][0].ts, bars[symbol][-1].ts)
        assert [q.price for q in stored] == [c.close for c in bars[symbol][:5]]  # bars 1..5, none twice
        daily = store.candles(symbol, "1d", bars[symbol][0].ts, bars[symbol][-1].ts)
        assert [c.close for c in daily] == [c.close for c in bars[symbol][:5]]  # SOL's cut roll-up redone


def test_invalid_quotes_are_rejected_counted_and_never_stored(settings, store) -> None:
    good, negative, wide = quote("61409.93501"), quote("-5", source="bad"), quote("61409", source="wide", conf="9000")
    collector = Scripted("oracle", [[good, negative, wide]])
    bus = InProcessBus()
    service = IngestService([collector], store, bus, settings, clock=lambda: T0)
    events = run_with_listener(service, bus, lambda svc: svc.run_once())
    stats = service.stats["oracle"]
    assert (stats.stored, stats.rejected) == (1, 2)
    assert [q.source for q in store.quotes("BTC", T0, T0.replace(minute=22))] == ["pyth"]
    rejected = store.rejections(T0, T0.replace(minute=22))
    assert sorted(r.source for r in rejected) == ["bad", "wide"] and all(not r.valid and r.reasons for r in rejected)
    assert [e.event.kind for e in events].count("rejection") == 2
    assert sum(stats.rejections.values()) >= 2


def test_stale_quote_is_rejected_against_the_wall_clock(settings, store) -> None:
    service = IngestService([Scripted("oracle", [[quote("61409.93501")]])], store, InProcessBus(), settings)
    asyncio.run(service.run_once())
    assert service.stats["oracle"].rejected == 1
    assert any("stale" in reason for reason in service.stats["oracle"].rejections)
    assert store.counts()["quotes"] == 0


def test_failing_collector_backs_off_recovers_and_never_stops_the_others(settings, store) -> None:
    flaky = Scripted("flaky", [FeedError("HTTP 500 from hermes"), FeedError("timed out"), [quote("61000")]])
    steady = Scripted("steady", [[quote("61001", source="replay-like")]])
    service = IngestService([flaky, steady], store, InProcessBus(), settings, clock=lambda: T0)
    delays = []

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(service.run(stop))
        for _ in range(200):
            await asyncio.sleep(0.01)
            delays.append(service.delay(flaky))
            if service.stats["flaky"].stored:
                break
        stop.set()
        await task

    asyncio.run(main())
    flaky_stats, steady_stats = service.stats["flaky"], service.stats["steady"]
    assert flaky_stats.errors == 2 and flaky_stats.last_error == "timed out" and flaky_stats.stored == 1
    assert flaky_stats.consecutive_errors == 0
    assert max(delays) == pytest.approx(0.04)  # 0.01 doubled per failure: 0.02, then 0.04
    assert steady_stats.runs > flaky_stats.runs  # kept its own pace meanwhile
    assert steady_stats.errors == 0


def test_blocking_fetch_runs_in_a_thread(settings, store) -> None:
    collector = ThreadCollector("sync", lambda: [quote("61409.93501")], interval=1)
    service = IngestService([collector], store, InProcessBus(), settings, clock=lambda: T0)
    asyncio.run(service.run_once())
    assert store.latest_quote("BTC").price == Decimal("61409.93501")


def test_redis_stream_bus_round_trip(redis_url) -> None:
    async def main() -> list[Envelope]:
        bus = RedisStreamBus(redis_url, stream="mikey:test-market")
        received: list[Envelope] = []

        async def listen() -> None:
            async for envelope in bus.subscribe():
                received.append(envelope)
                if len(received) == 2:
                    return

        listener = asyncio.create_task(listen())
        await asyncio.sleep(0.2)  # XREAD from "$" starts at subscription time
        await bus.publish(wrap(quote("61409.93501")))
        await bus.publish(wrap(quote("61410", at=T0.replace(second=42))))
        await asyncio.wait_for(listener, timeout=5)
        await bus.close()
        return received

    received = asyncio.run(main())
    assert [e.event.item.price for e in received] == [Decimal("61409.93501"), Decimal("61410")]


def test_sources_that_diverge_are_rejected(settings, store) -> None:
    """Pyth at 61409.93501 and a second oracle 5% away in the same minute: the second is refused as divergent."""
    pyth = Scripted("pyth", [[quote("61409.93501")], []])
    other = Scripted("switchboard", [[], [quote("64500", at=T0.replace(second=50), source="switchboard")]])
    service = IngestService([pyth, other], store, InProcessBus(), settings, clock=lambda: T0.replace(second=55))
    asyncio.run(service.run_once())
    asyncio.run(service.run_once())
    assert (service.stats["pyth"].stored, service.stats["switchboard"].rejected) == (1, 1)
    assert any(reason.startswith("divergence") for reason in service.stats["switchboard"].rejections)


def test_open_feed_follows_the_settings(settings) -> None:
    from mikey.market.feeds import open_feed
    from mikey.market.pyth import PythFeed

    assert isinstance(open_feed(settings), ReplayFeed)
    pyth = open_feed(settings.model_copy(update={"feed": "pyth"}))
    assert isinstance(pyth, PythFeed)
    pyth.close()


def test_candles_roll_up_minute_hour_day_across_rounds(settings, store) -> None:
    """Bars built level by level (1m from quotes, 1h from 1m, 1d from 1h) equal OHLC over all the day's quotes."""
    from datetime import timedelta

    day = datetime(2024, 5, 3, tzinfo=UTC)
    prices = [("10:00:10", "100"), ("10:00:50", "103"), ("10:01:30", "99"), ("11:05:00", "101"), ("11:06:00", "102")]
    quotes = [quote(p, at=day + timedelta(hours=int(t[:2]), minutes=int(t[3:5]), seconds=int(t[6:])))
              for t, p in prices]
    service = IngestService([Scripted("oracle", [[q] for q in quotes])], store, InProcessBus(), settings)
    for q in quotes:
        service.clock = lambda q=q: q.as_of  # each quote is fresh when it arrives
        asyncio.run(service.run_once())
    assert service.stats["oracle"].stored == 5
    ohlc = lambda c: (c.open, c.high, c.low, c.close)  # noqa: E731
    [daily] = store.candles("BTC", "1d", day, day + timedelta(days=1))
    assert ohlc(daily) == (Decimal("100"), Decimal("103"), Decimal("99"), Decimal("102"))
    hours = store.candles("BTC", "1h", day, day + timedelta(days=1))
    assert [ohlc(h) for h in hours] == [(Decimal("100"), Decimal("103"), Decimal("99"), Decimal("99")),
                                        (Decimal("101"), Decimal("102"), Decimal("101"), Decimal("102"))]
    assert len(store.candles("BTC", "1m", day, day + timedelta(days=1))) == 4
