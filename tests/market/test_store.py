"""The market store, on SQLite and PostgreSQL alike: exact prices, idempotent batches, half-open ranges, the
latest-quote cache, rejections kept apart, atomic batches and concurrent writers."""

from __future__ import annotations

import random
import sqlite3
import threading
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from mikey.domain import Candle, NewsItem, PriceCheck, Quote, SocialPost
from mikey.errors import ConfigError, DataUnavailable, InvalidInput
from mikey.market.store import SqlMarketStore, open_store
from mikey.settings import Settings

T0 = datetime(2024, 3, 1, tzinfo=UTC)
EXACT = [Decimal("61409.93501"), Decimal("0.000000012345"), Decimal("1.2345E-8"), Decimal("100.10"),
         Decimal("12345678901234567890.123456789012345678901234567890")]
WIDE = (T0 - timedelta(days=3650), T0 + timedelta(days=3650))


def quote(price: str | Decimal, *, at: int = 0, symbol: str = "SOL", source: str = "pyth",
          conf: str | None = None, ema: str | None = None) -> Quote:
    """A quote ``at`` seconds after T0."""
    return Quote(symbol=symbol, price=Decimal(price), as_of=T0 + timedelta(seconds=at), source=source,
                 conf=None if conf is None else Decimal(conf), ema_price=None if ema is None else Decimal(ema))


def candle(minute: int, close: str = "100.5", *, symbol: str = "SOL", step: timedelta = timedelta(minutes=1)) -> Candle:
    c = Decimal(close)
    return Candle(symbol=symbol, ts=T0 + minute * step, open=c - 1, high=c + 2, low=c - 2, close=c,
                  volume=Decimal("1234.5678"))


def fields(q: Quote) -> tuple:
    return q.symbol, q.source, q.as_of, q.price, q.conf, q.ema_price


# Exactness --------------------------------------------------------------------------------------------------------


def test_prices_round_trip_exactly_as_decimal(store: SqlMarketStore) -> None:
    written = [quote(p, at=i, conf="0", ema=p) for i, p in enumerate(EXACT)]
    assert store.upsert_quotes(written) == len(EXACT)
    read = store.quotes("SOL", *WIDE)
    assert [fields(q) for q in read] == [fields(q) for q in written]
    assert all(type(q.price) is Decimal and type(q.ema_price) is Decimal for q in read)
    assert str(read[0].price) == "61409.93501"

    bars = [Candle(symbol="SOL", ts=T0 + timedelta(minutes=i), open=p, high=p * 2, low=p / 2, close=p, volume=p)
            for i, p in enumerate(EXACT)]
    assert store.upsert_candles(bars, interval="1m", source="pyth") == len(EXACT)
    assert store.candles("SOL", "1m", *WIDE) == bars


def test_prices_are_stored_as_text_or_numeric_never_float(store: SqlMarketStore, store_settings: Settings) -> None:
    store.upsert_quotes([quote("61409.93501")])
    if store.backend == "sqlite":
        with sqlite3.connect(store_settings.market_db) as conn:
            assert conn.execute("SELECT typeof(price), price FROM quotes").fetchone() == ("text", "61409.93501")
    else:
        import psycopg

        with psycopg.connect(store_settings.database_url) as conn:
            types = dict(conn.execute("SELECT column_name, data_type FROM information_schema.columns "
                                      "WHERE table_name = 'candles'").fetchall())
            assert {types[c] for c in ("open", "high", "low", "close", "volume")} == {"numeric"}
            assert types["ts"] == "timestamp with time zone"


def test_timestamps_come_back_as_the_same_instant_in_utc(store: SqlMarketStore) -> None:
    paris = timezone(timedelta(hours=2))
    local = datetime(2024, 3, 1, 14, 30, 15, 123456, tzinfo=paris)
    store.upsert_quotes([Quote(symbol="SOL", price=Decimal("1"), as_of=local, source="pyth")])
    (back,) = store.quotes("SOL", *WIDE)
    assert back.as_of == local and back.as_of.utcoffset() == timedelta(0)
    assert back.as_of.hour == 12 and back.as_of.microsecond == 123456


# Idempotency ------------------------------------------------------------------------------------------------------


def test_reingesting_the_same_data_changes_nothing(store: SqlMarketStore) -> None:
    quotes = [quote(f"{100 + i}.25", at=i, symbol=s) for i in range(50) for s in ("SOL", "BTC")]
    bars = [candle(i) for i in range(30)]
    news = [NewsItem(id="n1", source="coindesk", title="SOL up", url="https://x/1", published_at=T0,
                     symbols=["SOL"])]
    posts = [SocialPost(id="p1", platform="x", author="a", text="SOL", created_at=T0, metrics={"likes": 3})]
    assert (store.upsert_quotes(quotes), store.upsert_candles(bars, interval="1m", source="pyth"),
            store.upsert_news(news), store.upsert_posts(posts)) == (100, 30, 1, 1)
    before = (store.counts(), store.quotes("SOL", *WIDE), store.candles("SOL", "1m", *WIDE))
    assert (store.upsert_quotes(reversed(quotes)), store.upsert_candles(bars, interval="1m", source="pyth"),
            store.upsert_news(news), store.upsert_posts(posts)) == (0, 0, 0, 0)
    assert (store.counts(), store.quotes("SOL", *WIDE), store.candles("SOL", "1m", *WIDE)) == before


def test_quotes_first_write_wins(store: SqlMarketStore) -> None:
    assert store.upsert_quotes([quote("150.00", conf="0.1")]) == 1
    assert store.upsert_quotes([quote("999.99", conf="5")]) == 0
    assert [q.price for q in store.quotes("SOL", *WIDE)] == [Decimal("150.00")]
    # inside one batch too: the first of two rows with one key is kept
    assert store.upsert_quotes([quote("1.5", at=1), quote("2.5", at=1)]) == 1
    assert store.quotes("SOL", *WIDE)[1].price == Decimal("1.5")


def test_candles_latest_write_of_a_bar_wins(store: SqlMarketStore) -> None:
    assert store.upsert_candles([candle(0, "100"), candle(1, "101")], interval="1m", source="pyth") == 2
    revised = candle(1, "105.5")
    assert store.upsert_candles([revised], interval="1m", source="binance") == 1
    assert store.candles("SOL", "1m", *WIDE) == [candle(0, "100"), revised]
    assert store.upsert_candles([revised], interval="1m", source="binance") == 0
    # inside one batch the later row wins
    assert store.upsert_candles([candle(2, "10"), candle(2, "20")], interval="1m", source="pyth") == 1
    assert store.candles("SOL", "1m", *WIDE)[-1].close == Decimal("20")


def test_latest_candle_time_is_per_market_interval_and_source(store: SqlMarketStore) -> None:
    """Where a restarted replay resumes: the newest bar rolled up from one source, whatever the others hold."""
    assert store.latest_candle_time("SOL", "1m", source="pyth") is None
    store.upsert_candles([candle(0), candle(1)], interval="1m", source="pyth")
    store.upsert_candles([candle(5)], interval="1m", source="binance")
    store.upsert_candles([candle(9, symbol="BTC")], interval="1m", source="pyth")
    day = timedelta(days=1)
    store.upsert_candles([candle(3, step=day)], interval="1d", source="pyth")
    assert store.latest_candle_time("SOL", "1m", source="pyth") == T0 + timedelta(minutes=1)
    assert store.latest_candle_time("SOL", "1m", source="binance") == T0 + timedelta(minutes=5)
    assert store.latest_candle_time("SOL", "1d", source="pyth") == T0 + 3 * day
    assert store.latest_candle_time("ETH", "1m", source="pyth") is None


def test_news_first_write_wins_and_posts_take_the_latest_metrics(store: SqlMarketStore) -> None:
    item = NewsItem(id="guid-1", source="theblock", title="ETH ETF", url="https://t/1", published_at=T0,
                    summary="s", symbols=["ETH", "BTC"])
    store.upsert_news([item])
    assert store.upsert_news([item.model_copy(update={"title": "edited"})]) == 0
    assert store.news(*WIDE) == [item]
    assert store.news(*WIDE, symbol="BTC") == [item] and store.news(*WIDE, symbol="SOL") == []

    post = SocialPost(id="9", platform="discord", author="bob", text="SOL to the moon", created_at=T0,
                      url=None, symbols=["SOL"], metrics={"likes": 1})
    store.upsert_posts([post])
    grown = post.model_copy(update={"metrics": {"likes": 7, "reposts": 2}})
    assert store.upsert_posts([grown]) == 1
    assert store.posts(*WIDE) == [grown] and store.posts(*WIDE, symbol="ETH") == []
    assert store.counts()["social_posts"] == 1


# Ranges -----------------------------------------------------------------------------------------------------------


def test_candle_ranges_are_half_open_and_ordered(store: SqlMarketStore) -> None:
    bars = [candle(i, f"{100 + i}") for i in range(10)]
    store.upsert_candles(reversed(bars), interval="1m", source="pyth")
    store.upsert_candles([candle(3, symbol="BTC")], interval="1m", source="pyth")
    store.upsert_candles([candle(0, step=timedelta(hours=1))], interval="1h", source="pyth")
    at = [b.ts for b in bars]
    assert store.candles("SOL", "1m", at[2], at[5]) == bars[2:5]  # start included, end excluded
    assert store.candles("SOL", "1m", at[2], at[2]) == []
    assert store.candles("SOL", "1m", *WIDE) == bars  # neither other symbols nor other intervals
    assert store.candles("SOL", "1h", *WIDE) == [candle(0, step=timedelta(hours=1))]
    assert store.candles("ETH", "1m", *WIDE) == []


def test_quote_ranges_are_half_open_across_sources(store: SqlMarketStore) -> None:
    store.upsert_quotes([quote("2", at=1, source="switchboard"), quote("1", at=1, source="pyth"),
                         quote("3", at=2), quote("0.5", at=0)])
    got = store.quotes("SOL", T0 + timedelta(seconds=1), T0 + timedelta(seconds=2))
    assert [(q.source, q.price) for q in got] == [("pyth", Decimal("1")), ("switchboard", Decimal("2"))]


def test_candle_range_read_walks_the_primary_key(store: SqlMarketStore) -> None:
    store.upsert_candles([candle(i) for i in range(3000)], interval="1m", source="pyth")
    plan = store.query_plan("SOL", "1m", T0 + timedelta(minutes=100), T0 + timedelta(minutes=200))
    if store.backend == "sqlite":
        assert "USING PRIMARY KEY" in plan and "TEMP B-TREE" not in plan, plan
    else:
        assert "candles_pkey" in plan and "Sort" not in plan, plan


@pytest.mark.parametrize("start, end", [(T0 + timedelta(1), T0), (datetime(2024, 1, 1), T0)])
def test_bad_windows_are_refused(store: SqlMarketStore, start: datetime, end: datetime) -> None:
    with pytest.raises(InvalidInput, match="start|timezone"):
        store.candles("SOL", "1m", start, end)


# The latest-quote cache -------------------------------------------------------------------------------------------


def test_latest_quote_cache_follows_what_is_stored(store: SqlMarketStore, store_settings: Settings) -> None:
    assert store.latest_quote("SOL") is None
    store.upsert_quotes([quote("10", at=10), quote("9", at=9, symbol="BTC")])
    assert store.latest_quote("SOL").price == Decimal("10")
    store.upsert_quotes([quote("5", at=5)])  # older: the latest stays
    assert store.latest_quote("SOL").price == Decimal("10")
    store.upsert_quotes([quote("99", at=10)])  # same key, ignored by the database: the cache must agree
    assert store.latest_quote("SOL").price == Decimal("10")
    store.upsert_quotes([quote("11", at=11, source="switchboard", conf="0.01")])
    newest = store.latest_quote("SOL")
    assert (newest.price, newest.source, newest.conf) == (Decimal("11"), "switchboard", Decimal("0.01"))
    assert store.latest_quote("BTC").price == Decimal("9")
    with open_store(store_settings) as fresh:  # an empty cache fills from the database on a miss
        assert fields(fresh.latest_quote("SOL")) == fields(newest)
        fresh.upsert_quotes([quote("12", at=12)])
    assert store.latest_quote("SOL") == newest  # another process's write: seen after forget_latest()
    store.forget_latest()
    assert store.latest_quote("SOL").price == Decimal("12")


def test_a_failed_batch_leaves_the_cache_alone(store: SqlMarketStore) -> None:
    store.upsert_quotes([quote("10", at=10)])
    with pytest.raises(InvalidInput):
        store.upsert_quotes([quote("20", at=20), quote("0", at=21)])
    assert store.latest_quote("SOL").price == Decimal("10")


# Rejections -------------------------------------------------------------------------------------------------------


def test_rejections_are_stored_apart_from_quotes(store: SqlMarketStore) -> None:
    check = PriceCheck(symbol="SOL", source="pyth", valid=False, checked_at=T0,
                       reasons=["stale: 95s old (max 60s)", "conf/price 0.031 > 0.02"])
    assert store.record_rejection(check) is True
    assert store.record_rejection(check) is False
    assert store.rejections(*WIDE) == [check]
    assert store.rejections(*WIDE, symbol="BTC") == []
    assert store.counts() == {"quotes": 0, "candles": 0, "news_items": 0, "social_posts": 0, "rejections": 1}
    assert store.latest_quote("SOL") is None
    with pytest.raises(InvalidInput, match="only an invalid PriceCheck"):
        store.record_rejection(PriceCheck(symbol="SOL", source="pyth", valid=True, checked_at=T0))


# Bad input and atomic batches -------------------------------------------------------------------------------------


def test_one_bad_row_rolls_back_its_batch_only(store: SqlMarketStore) -> None:
    assert store.upsert_quotes([quote("1", at=i) for i in range(5)]) == 5
    batch = [quote("2", at=100 + i) for i in range(10)]
    batch[6] = quote("0", at=106)  # written in key order, so rows 100..105 are already sent when it fails
    with pytest.raises(InvalidInput, match="quote SOL/pyth@2024-03-01T00:01:46.*price must be a finite positive"):
        store.upsert_quotes(batch)
    assert store.counts()["quotes"] == 5
    assert store.quotes("SOL", T0 + timedelta(seconds=100), WIDE[1]) == []

    store.upsert_candles([candle(0)], interval="1m", source="pyth")
    broken = [candle(1), candle(2), candle(3).model_copy(update={"high": Decimal("1")}), candle(4)]
    with pytest.raises(InvalidInput, match="do not bracket"):
        store.upsert_candles(broken, interval="1m", source="pyth")
    assert store.candles("SOL", "1m", *WIDE) == [candle(0)]
    assert store.upsert_quotes([quote("3", at=200)]) == 1  # the store is still usable


@pytest.mark.parametrize("call, message", [
    (lambda s: s.upsert_quotes([quote("1"), "not a quote"]), "item 1 is a str, not a Quote"),
    (lambda s: s.upsert_quotes(quote("1")), "expected an iterable of Quote"),
    (lambda s: s.upsert_quotes([Quote.model_construct(symbol="SOL", price=Decimal("NaN"), as_of=T0,
                                                      source="pyth", conf=None, ema_price=None)]), "finite"),
    (lambda s: s.upsert_quotes([quote("-1")]), "positive"),
    (lambda s: s.upsert_quotes([quote("1", symbol=" ")]), "symbol must be a non-empty string"),
    (lambda s: s.upsert_quotes([quote("1", conf="-0.1")]), "conf must be a finite non-negative"),
    (lambda s: s.upsert_candles([candle(0)], interval="5m", source="pyth"), "interval must be one of 1m, 1h, 1d"),
    (lambda s: s.upsert_candles([candle(0)], interval="1m", source=""), "source must be a non-empty"),
    (lambda s: s.upsert_candles([candle(1)], interval="1h", source="pyth"), "not aligned to a 1h boundary"),
    (lambda s: s.candles("SOL", "1w", *WIDE), "interval must be one of"),
])
def test_bad_input_is_refused_with_a_clear_message(store: SqlMarketStore, call, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        call(store)
    assert store.counts()["quotes"] == store.counts()["candles"] == 0


def test_concurrent_writers_do_not_duplicate(store: SqlMarketStore, store_settings: Settings) -> None:
    """Four writers, each with its own connection, race to store the same rows in different orders."""
    quotes = [quote(f"{i}.5", at=i, symbol=("SOL", "BTC", "ETH")[i % 3]) for i in range(600)]
    bars = [candle(i) for i in range(300)]
    inserted: list[int] = []
    errors: list[BaseException] = []
    writers = [open_store(store_settings) for _ in range(4)]

    def write(own: SqlMarketStore, seed: int) -> None:
        rng = random.Random(seed)
        mine = quotes[:]
        rng.shuffle(mine)
        try:
            for n in range(0, len(mine), 50):
                inserted.append(own.upsert_quotes(mine[n:n + 50]))
                own.upsert_candles(rng.sample(bars, 40), interval="1m", source="pyth")
        except BaseException as exc:  # surfaced below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(w, n)) for n, w in enumerate(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    for w in writers:
        w.close()
    assert not errors, errors
    assert sum(inserted) == len(quotes)  # every row inserted by exactly one writer
    counts = store.counts()
    assert counts["quotes"] == len(quotes) and counts["candles"] <= len(bars)
    assert [fields(q) for q in store.quotes("BTC", *WIDE)] == [fields(q) for q in quotes if q.symbol == "BTC"]


# Backend choice ---------------------------------------------------------------------------------------------------


def test_open_store_picks_sqlite_by_default_with_wal_and_full_sync(settings: Settings) -> None:
    with open_store(settings) as s:
        assert s.backend == "sqlite" and settings.market_db.exists()
        assert s._d.execute("PRAGMA synchronous") == [(2,)]  # FULL: committed batches survive power loss too
    with sqlite3.connect(settings.market_db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_open_store_picks_postgres_when_a_url_is_set(postgres_url: str, settings: Settings) -> None:
    with open_store(settings.model_copy(update={"database_url": postgres_url})) as s:
        assert s.backend == "postgresql"
        assert s.counts()["quotes"] == 0


def test_unusable_database_urls_are_clear_errors(settings: Settings) -> None:
    with pytest.raises(ConfigError, match="must be a PostgreSQL URL"):
        open_store(settings.model_copy(update={"database_url": "mysql://u:secret@127.0.0.1/db"}))
    with socket_closed_port() as port:
        url = f"postgresql://u:secret@127.0.0.1:{port}/db"
        with pytest.raises(DataUnavailable, match=r"unreachable \(postgresql://u:\*\*\*@127.0.0.1") as err:
            open_store(settings.model_copy(update={"database_url": url, "http_timeout": 2}))
        assert "secret" not in str(err.value)


def test_empty_batches_are_a_no_op(store: SqlMarketStore) -> None:
    assert (store.upsert_quotes([]), store.upsert_candles(iter([]), interval="1d", source="pyth"),
            store.upsert_news([]), store.upsert_posts([])) == (0, 0, 0, 0)


def test_postgres_store_reconnects_after_the_server_drops_it(postgres_url: str, settings: Settings) -> None:
    import psycopg

    with open_store(settings.model_copy(update={"database_url": postgres_url})) as s:
        s.upsert_quotes([quote("1")])
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE datname = current_database() AND pid <> pg_backend_pid()")
        with pytest.raises(DataUnavailable, match="postgresql market database failed"):
            s.upsert_quotes([quote("2", at=1)])
        assert s.upsert_quotes([quote("2", at=1)]) == 1
        assert [q.price for q in s.quotes("SOL", *WIDE)] == [Decimal("1"), Decimal("2")]


class socket_closed_port:
    """A loopback port nothing listens on (bound, never listening, for the duration)."""

    def __enter__(self) -> int:
        import socket

        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        return self._sock.getsockname()[1]

    def __exit__(self, *exc: object) -> None:
        self._sock.close()
