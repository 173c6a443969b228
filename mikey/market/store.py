"""Market-data storage: quotes, candles, news, social posts and price rejections, in SQLite or PostgreSQL.

One implementation serves both databases (embedded default and scale-out, chosen by ``settings.database_url``); the
SQL is shared and a tiny ``Dialect`` (``mikey.market.dialects``) holds what differs: placeholders, column types, the
"value changed" operator of the upsert, value codecs and transactions.

Semantics, identical on both backends:

- **Exact prices.** Decimals are stored as fixed-point TEXT (SQLite) or unconstrained NUMERIC (PostgreSQL) and read
  back as ``Decimal`` equal to what was written; never float. Timestamps are UTC (ISO-8601 TEXT with microseconds,
  which sorts chronologically, in SQLite; TIMESTAMPTZ in PostgreSQL).
- **Batches.** Each ``upsert_*`` call is one transaction. Rows are validated as they are written; the first bad row
  raises ``InvalidInput`` and rolls the whole batch back, leaving earlier batches intact.
- **Idempotency.** Re-ingesting the same rows changes nothing and returns 0. For a key already stored with other
  values: quotes, news and rejections keep the **first** write (a published price or article does not change, so
  a different value is a feed glitch, not news); candles and social posts take the **latest** write (a bar is
  revised until it closes; likes and reposts grow). Duplicate keys inside one batch follow the same rule.
- **Ranges** are half-open, ``start <= ts < end``, so consecutive windows never share a row; results are ordered
  by time and served by the primary-key (or time) index.
- **Durability.** SQLite runs in WAL mode with ``synchronous=FULL``: WAL+NORMAL survives a killed process but may
  lose the last committed batches on power loss or an OS crash, which breaks "a committed row is never lost".
  PostgreSQL keeps its defaults (``fsync``, ``synchronous_commit=on``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel

from mikey.domain import Candle, NewsItem, PriceCheck, Quote, SocialPost
from mikey.errors import ConfigError, DataUnavailable, InvalidInput, MikeyError
from mikey.market.dialects import Dialect, PostgresDialect, SqliteDialect, Synchronous, redact_url
from mikey.market.normalize import INTERVALS, Interval
from mikey.settings import Settings

TABLES = ("quotes", "candles", "news_items", "social_posts", "rejections")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
T = TypeVar("T")


class MarketStore(Protocol):
    """Durable market data. Ranges are ``start <= ts < end``; every write batch is one transaction."""

    def upsert_quotes(self, quotes: Iterable[Quote]) -> int:
        """Store quotes; first write of a (symbol, source, as_of) wins. Returns how many rows were inserted."""
        ...

    def upsert_candles(self, candles: Iterable[Candle], *, interval: Interval, source: str) -> int:
        """Store bars; a later write of the same (symbol, interval, ts) wins. Returns rows inserted or changed."""
        ...

    def upsert_news(self, items: Iterable[NewsItem]) -> int:
        """Store articles; first write of an id wins. Returns how many were inserted."""
        ...

    def upsert_posts(self, posts: Iterable[SocialPost]) -> int:
        """Store posts; a later write of an id wins (metrics grow). Returns rows inserted or changed."""
        ...

    def record_rejection(self, check: PriceCheck) -> bool:
        """Record an invalid price's reasons (never a quote). False when that rejection was already stored."""
        ...

    def candles(self, symbol: str, interval: Interval, start: datetime, end: datetime) -> list[Candle]:
        """Bars of one market and interval with ``start <= ts < end``, oldest first."""
        ...

    def quotes(self, symbol: str, start: datetime, end: datetime) -> list[Quote]:
        """Quotes of one market, all sources, with ``start <= as_of < end``, oldest first."""
        ...

    def latest_quote(self, symbol: str) -> Quote | None:
        """The newest stored quote of a market (ties: the greatest source name), or None."""
        ...

    def latest_candle_time(self, symbol: str, interval: Interval, *, source: str) -> datetime | None:
        """Open time of the newest ``interval`` bar of ``symbol`` rolled up from ``source``'s quotes, or None."""
        ...

    def news(self, start: datetime, end: datetime, *, symbol: str | None = None) -> list[NewsItem]:
        """Articles published in ``[start, end)``, oldest first, optionally only those tagged with ``symbol``."""
        ...

    def posts(self, start: datetime, end: datetime, *, symbol: str | None = None) -> list[SocialPost]:
        """Posts created in ``[start, end)``, oldest first, optionally only those tagged with ``symbol``."""
        ...

    def rejections(self, start: datetime, end: datetime, *, symbol: str | None = None) -> list[PriceCheck]:
        """Rejected prices checked in ``[start, end)``, oldest first."""
        ...

    def counts(self) -> dict[str, int]:
        """Rows per table."""
        ...

    def close(self) -> None:
        """Release the connection; the store cannot be used afterwards."""
        ...


# Schema and statements --------------------------------------------------------------------------------------------


def schema(d: Dialect) -> list[str]:
    """CREATE statements; ``"interval"`` is quoted because it is a keyword in PostgreSQL."""
    dec, ts, js, opt = d.decimal_type, d.time_type, d.json_type, d.table_options
    return [
        f"CREATE TABLE IF NOT EXISTS quotes (symbol TEXT NOT NULL, source TEXT NOT NULL, ts {ts} NOT NULL, "
        f"price {dec} NOT NULL, conf {dec}, ema_price {dec}, PRIMARY KEY (symbol, source, ts)){opt}",
        # latest_quote and quotes() read one market across sources by time
        "CREATE INDEX IF NOT EXISTS quotes_by_time ON quotes (symbol, ts, source)",
        f"""CREATE TABLE IF NOT EXISTS candles (symbol TEXT NOT NULL,
        "interval" TEXT NOT NULL CHECK ("interval" IN ('1m', '1h', '1d')), ts {ts} NOT NULL,
        open {dec} NOT NULL, high {dec} NOT NULL, low {dec} NOT NULL, close {dec} NOT NULL, volume {dec} NOT NULL,
        source TEXT NOT NULL, PRIMARY KEY (symbol, "interval", ts)){opt}""",
        f"CREATE TABLE IF NOT EXISTS news_items (id TEXT PRIMARY KEY, source TEXT NOT NULL, title TEXT NOT NULL, "
        f"url TEXT NOT NULL, published_at {ts} NOT NULL, summary TEXT NOT NULL, symbols {js} NOT NULL)",
        "CREATE INDEX IF NOT EXISTS news_items_by_time ON news_items (published_at)",
        f"CREATE TABLE IF NOT EXISTS social_posts (id TEXT PRIMARY KEY, platform TEXT NOT NULL, "
        f"author TEXT NOT NULL, text TEXT NOT NULL, created_at {ts} NOT NULL, url TEXT, symbols {js} NOT NULL, "
        f"metrics {js} NOT NULL)",
        "CREATE INDEX IF NOT EXISTS social_posts_by_time ON social_posts (created_at)",
        f"CREATE TABLE IF NOT EXISTS rejections (ts {ts} NOT NULL, symbol TEXT NOT NULL, source TEXT NOT NULL, "
        f"reasons {js} NOT NULL, PRIMARY KEY (symbol, source, ts)){opt}",
        "CREATE INDEX IF NOT EXISTS rejections_by_time ON rejections (ts)",
    ]


def upsert_sql(d: Dialect, table: str, columns: Sequence[str], key: Sequence[str], *, latest_wins: bool) -> str:
    """INSERT ... ON CONFLICT: DO NOTHING (first write wins), or DO UPDATE only when a value differs, so an
    identical re-ingest writes nothing and counts 0."""
    cols = ", ".join(columns)
    conflict = f"ON CONFLICT ({', '.join(key)}) DO NOTHING"
    if latest_wins:
        rest = [c for c in columns if c not in key]
        sets = ", ".join(f"{c} = excluded.{c}" for c in rest)
        changed = " OR ".join(f"{table}.{c} {d.distinct} excluded.{c}" for c in rest)
        conflict = f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {sets} WHERE {changed}"
    return f"INSERT INTO {table} ({cols}) VALUES ({', '.join('?' * len(columns))}) {conflict}"


QUOTE_COLS = ("symbol", "source", "ts", "price", "conf", "ema_price")
CANDLE_COLS = ("symbol", '"interval"', "ts", "open", "high", "low", "close", "volume", "source")
NEWS_COLS = ("id", "source", "title", "url", "published_at", "summary", "symbols")
POST_COLS = ("id", "platform", "author", "text", "created_at", "url", "symbols", "metrics")
REJECTION_COLS = ("ts", "symbol", "source", "reasons")


# Validation -------------------------------------------------------------------------------------------------------


def _text(value: object, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"{what} must be a non-empty string, got {value!r}")
    return value


def _price(value: Decimal | None, what: str, *, zero_ok: bool = False, optional: bool = False) -> Decimal | None:
    if value is None and optional:
        return None
    if not isinstance(value, Decimal) or not value.is_finite() or value < 0 or (value == 0 and not zero_ok):
        raise InvalidInput(f"{what} must be a finite {'non-negative' if zero_ok else 'positive'} Decimal, "
                           f"got {value!r}")
    return value


def _utc(value: object, what: str) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise InvalidInput(f"{what} must be a timezone-aware datetime, got {value!r}")
    return value.astimezone(UTC)


def _window(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    start, end = _utc(start, "start"), _utc(end, "end")
    if start > end:
        raise InvalidInput(f"start {start.isoformat()} is after end {end.isoformat()}")
    return start, end


def _interval(value: object) -> str:
    if value not in INTERVALS:
        raise InvalidInput(f"interval must be one of {', '.join(INTERVALS)}, got {value!r}")
    return str(value)


def _batch(items: Iterable[T], kind: type[T], key: Callable[[T], Hashable], *, latest_wins: bool) -> list[T]:
    """Type-check a batch, apply the conflict rule to duplicate keys inside it, and sort by key: writers that take
    row locks in one global order cannot deadlock each other (PostgreSQL)."""
    if isinstance(items, (str, bytes, BaseModel)) or not isinstance(items, Iterable):  # a model iterates its fields
        raise InvalidInput(f"expected an iterable of {kind.__name__}, got {type(items).__name__}")
    unique: dict[Hashable, T] = {}
    for n, item in enumerate(items):
        if not isinstance(item, kind):
            raise InvalidInput(f"item {n} is a {type(item).__name__}, not a {kind.__name__}")
        k = key(item)
        if latest_wins or k not in unique:
            unique[k] = item
    return [unique[k] for k in sorted(unique)]  # type: ignore[type-var]


# The store --------------------------------------------------------------------------------------------------------


class SqlMarketStore:
    """``MarketStore`` over one connection (SQLite or PostgreSQL), safe to share between threads (calls are
    serialised). ``latest_quote`` is served from an in-process cache that every write refreshes from the database
    inside its own transaction, so it equals the stored truth after this store's writes; writes by other processes
    are seen on a cache miss, or after ``forget_latest()``."""

    def __init__(self, dialect: Dialect) -> None:
        self._d = dialect
        self._lock = threading.RLock()
        self._latest: dict[str, Quote] = {}
        d = self._d
        self._sql = {
            "quotes": upsert_sql(d, "quotes", QUOTE_COLS, QUOTE_COLS[:3], latest_wins=False),
            "candles": upsert_sql(d, "candles", CANDLE_COLS, CANDLE_COLS[:3], latest_wins=True),
            "news": upsert_sql(d, "news_items", NEWS_COLS, ("id",), latest_wins=False),
            "posts": upsert_sql(d, "social_posts", POST_COLS, ("id",), latest_wins=True),
            "rejection": upsert_sql(d, "rejections", REJECTION_COLS, ("symbol", "source", "ts"), latest_wins=False),
        }
        with self._errors("creating the schema"), self._lock, d.transaction():
            if isinstance(d, PostgresDialect):  # concurrent CREATE TABLE IF NOT EXISTS can collide in PostgreSQL
                d.execute("SELECT pg_advisory_xact_lock(4242001)")
            for statement in schema(d):
                d.execute(statement)

    @property
    def backend(self) -> str:
        return self._d.name

    # Writes -----------------------------------------------------------------------------------------------------

    def upsert_quotes(self, quotes: Iterable[Quote]) -> int:
        batch = _batch(quotes, Quote, lambda q: (q.symbol, q.source, q.as_of), latest_wins=False)
        if not batch:
            return 0
        d = self._d

        def rows() -> Iterator[tuple[Any, ...]]:
            for q in batch:
                what = f"quote {q.symbol}/{q.source}@{q.as_of.isoformat()}"
                yield (_text(q.symbol, "symbol"), _text(q.source, "source"), d.ts_in(_utc(q.as_of, f"{what} as_of")),
                       d.dec_in(_price(q.price, f"{what} price")),
                       d.dec_in(_price(q.conf, f"{what} conf", zero_ok=True, optional=True)),
                       d.dec_in(_price(q.ema_price, f"{what} ema_price", optional=True)))

        with self._errors("storing quotes"), self._lock:
            with d.transaction():
                inserted = d.executemany(self._sql["quotes"], rows())
                latest = {s: self._latest_from_db(s) for s in {q.symbol for q in batch}}
            self._latest.update({s: q for s, q in latest.items() if q is not None})
        return inserted

    def upsert_candles(self, candles: Iterable[Candle], *, interval: Interval, source: str) -> int:
        interval = _interval(interval)  # type: ignore[assignment]
        source = _text(source, "source")
        step = INTERVALS[interval]
        batch = _batch(candles, Candle, lambda c: (c.symbol, c.ts), latest_wins=True)
        if not batch:
            return 0
        d = self._d

        def rows() -> Iterator[tuple[Any, ...]]:
            for c in batch:
                what = f"{interval} candle {c.symbol}@{c.ts.isoformat()}"
                ts = _utc(c.ts, f"{what} ts")
                if (ts - _EPOCH) % step:
                    raise InvalidInput(f"{what}: ts is not aligned to a {interval} boundary (UTC)")
                o, h, lo, cl = (_price(v, f"{what} {n}") for n, v in
                                (("open", c.open), ("high", c.high), ("low", c.low), ("close", c.close)))
                if not (lo <= min(o, cl) and h >= max(o, cl)):  # type: ignore[operator,type-var]
                    raise InvalidInput(f"{what}: low {lo} / high {h} do not bracket open {o} and close {cl}")
                vol = _price(c.volume, f"{what} volume", zero_ok=True)
                yield (_text(c.symbol, "symbol"), interval, d.ts_in(ts), d.dec_in(o), d.dec_in(h), d.dec_in(lo),
                       d.dec_in(cl), d.dec_in(vol), source)

        return self._write("storing candles", "candles", rows())

    def upsert_news(self, items: Iterable[NewsItem]) -> int:
        d, batch = self._d, _batch(items, NewsItem, lambda n: n.id, latest_wins=False)
        rows = ((_text(n.id, "news id"), _text(n.source, f"news {n.id} source"), n.title, _text(n.url, "news url"),
                 d.ts_in(_utc(n.published_at, f"news {n.id} published_at")), n.summary, d.json_in(list(n.symbols)))
                for n in batch)
        return self._write("storing news", "news", rows) if batch else 0

    def upsert_posts(self, posts: Iterable[SocialPost]) -> int:
        d, batch = self._d, _batch(posts, SocialPost, lambda p: p.id, latest_wins=True)
        rows = ((_text(p.id, "post id"), p.platform, p.author, p.text,
                 d.ts_in(_utc(p.created_at, f"post {p.id} created_at")), p.url, d.json_in(list(p.symbols)),
                 d.json_in(dict(p.metrics))) for p in batch)
        return self._write("storing posts", "posts", rows) if batch else 0

    def record_rejection(self, check: PriceCheck) -> bool:
        if not isinstance(check, PriceCheck) or check.valid or not check.reasons:
            raise InvalidInput(f"only an invalid PriceCheck with reasons is a rejection, got {check!r}")
        d = self._d
        row = (d.ts_in(_utc(check.checked_at, "checked_at")), _text(check.symbol, "symbol"),
               _text(check.source, "source"), d.json_in(list(check.reasons)))
        return self._write("recording a rejection", "rejection", [row]) == 1

    # Reads ------------------------------------------------------------------------------------------------------

    def candles(self, symbol: str, interval: Interval, start: datetime, end: datetime) -> list[Candle]:
        (start, end), d = _window(start, end), self._d
        rows = self._read("reading candles", _CANDLES_SQL, (symbol, _interval(interval), d.ts_in(start), d.ts_in(end)))
        dec, ts = d.dec_out, d.ts_out
        # validated construction: measured faster than model_construct (pydantic-core does it in Rust), and safe
        return [Candle(symbol=s, ts=ts(t), open=dec(o), high=dec(h), low=dec(lo), close=dec(c), volume=dec(v))
                for s, t, o, h, lo, c, v in rows]

    def quotes(self, symbol: str, start: datetime, end: datetime) -> list[Quote]:
        (start, end), d = _window(start, end), self._d
        rows = self._read("reading quotes", f"SELECT {', '.join(QUOTE_COLS)} FROM quotes WHERE symbol = ? AND "
                          "ts >= ? AND ts < ? ORDER BY ts, source", (symbol, d.ts_in(start), d.ts_in(end)))
        return [self._quote(r) for r in rows]

    def latest_candle_time(self, symbol: str, interval: Interval, *, source: str) -> datetime | None:
        rows = self._read("reading the latest candle", 'SELECT MAX(ts) FROM candles WHERE symbol = ? AND '
                          '"interval" = ? AND source = ?', (symbol, _interval(interval), source))
        return None if rows[0][0] is None else self._d.ts_out(rows[0][0])

    def latest_quote(self, symbol: str) -> Quote | None:
        with self._lock:
            cached = self._latest.get(symbol)
            if cached is not None:
                return cached
            with self._errors("reading the latest quote"):
                found = self._latest_from_db(symbol)
            if found is not None:
                self._latest[symbol] = found
            return found

    def forget_latest(self) -> None:
        """Drop the latest-quote cache, e.g. when other processes write to the same database."""
        with self._lock:
            self._latest.clear()

    def news(self, start: datetime, end: datetime, *, symbol: str | None = None) -> list[NewsItem]:
        (start, end), d = _window(start, end), self._d
        rows = self._read("reading news", f"SELECT {', '.join(NEWS_COLS)} FROM news_items WHERE published_at >= ? "
                          "AND published_at < ? ORDER BY published_at, id", (d.ts_in(start), d.ts_in(end)))
        items = [NewsItem(id=i, source=s, title=t, url=u, published_at=d.ts_out(p), summary=m, symbols=d.json_out(y))
                 for i, s, t, u, p, m, y in rows]
        return [n for n in items if symbol is None or symbol in n.symbols]

    def posts(self, start: datetime, end: datetime, *, symbol: str | None = None) -> list[SocialPost]:
        (start, end), d = _window(start, end), self._d
        rows = self._read("reading posts", f"SELECT {', '.join(POST_COLS)} FROM social_posts WHERE created_at >= ? "
                          "AND created_at < ? ORDER BY created_at, id", (d.ts_in(start), d.ts_in(end)))
        posts = [SocialPost(id=i, platform=p, author=a, text=t, created_at=d.ts_out(c), url=u, symbols=d.json_out(s),
                            metrics=d.json_out(m)) for i, p, a, t, c, u, s, m in rows]
        return [p for p in posts if symbol is None or symbol in p.symbols]

    def rejections(self, start: datetime, end: datetime, *, symbol: str | None = None) -> list[PriceCheck]:
        (start, end), d = _window(start, end), self._d
        rows = self._read("reading rejections", f"SELECT {', '.join(REJECTION_COLS)} FROM rejections WHERE ts >= ? "
                          "AND ts < ? ORDER BY ts, symbol, source", (d.ts_in(start), d.ts_in(end)))
        checks = [PriceCheck(symbol=s, source=src, valid=False, reasons=d.json_out(r), checked_at=d.ts_out(t))
                  for t, s, src, r in rows]
        return [c for c in checks if symbol is None or c.symbol == symbol]

    def counts(self) -> dict[str, int]:
        return {t: int(self._read("counting rows", f"SELECT COUNT(*) FROM {t}")[0][0]) for t in TABLES}

    def query_plan(self, symbol: str, interval: Interval, start: datetime, end: datetime) -> str:
        """The database's plan for the candle range read (tests check it walks the primary key, unsorted)."""
        d = self._d
        rows = self._read("explaining a query", d.explain + _CANDLES_SQL,
                          (symbol, _interval(interval), d.ts_in(start), d.ts_in(end)))
        return "\n".join(" ".join(str(col) for col in row) for row in rows)

    def close(self) -> None:
        with self._lock:
            self._d.close()

    def __enter__(self) -> SqlMarketStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Helpers ----------------------------------------------------------------------------------------------------

    def _write(self, action: str, statement: str, rows: Iterable[Sequence[Any]]) -> int:
        """One batch, one transaction: all rows or none."""
        with self._errors(action), self._lock, self._d.transaction():
            return self._d.executemany(self._sql[statement], rows)

    def _read(self, action: str, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._errors(action), self._lock:
            return self._d.execute(sql, params)

    def _latest_from_db(self, symbol: str) -> Quote | None:
        rows = self._d.execute(f"SELECT {', '.join(QUOTE_COLS)} FROM quotes WHERE symbol = ? "
                               "ORDER BY ts DESC, source DESC LIMIT 1", (symbol,))
        return self._quote(rows[0]) if rows else None

    def _quote(self, row: Sequence[Any]) -> Quote:
        """``prev_close`` is not stored: it belongs to the daily candles, not to one oracle price."""
        d = self._d
        symbol, source, ts, price, conf, ema = row
        return Quote(symbol=symbol, source=source, as_of=d.ts_out(ts), price=d.dec_out(price), conf=d.dec_out(conf),
                     ema_price=d.dec_out(ema))

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        """Database errors become MIKEY's: refused data is ``InvalidInput``, a failing database ``DataUnavailable``."""
        try:
            yield
        except MikeyError:
            raise
        except self._d.invalid_errors as exc:
            raise InvalidInput(f"{action}: the {self._d.name} database refused the data: {exc}") from exc
        except self._d.unavailable_errors as exc:
            raise DataUnavailable(f"{action}: the {self._d.name} market database failed: {exc}") from exc


_CANDLES_SQL = ('SELECT symbol, ts, open, high, low, close, volume FROM candles '
                'WHERE symbol = ? AND "interval" = ? AND ts >= ? AND ts < ? ORDER BY ts')


def open_store(settings: Settings, *, synchronous: Synchronous = "FULL") -> SqlMarketStore:
    """The market store the settings ask for: PostgreSQL at ``database_url`` when set, else SQLite at
    ``market_db``. ``synchronous`` applies to SQLite only; NORMAL trades power-loss durability for speed."""
    url = settings.database_url
    if url:
        if not url.startswith(("postgresql://", "postgres://")):
            raise ConfigError(f"database_url must be a PostgreSQL URL (postgresql://...), got {redact_url(url)!r}")
        return SqlMarketStore(PostgresDialect(url, connect_timeout=settings.http_timeout))
    return SqlMarketStore(SqliteDialect(settings.market_db, synchronous=synchronous))


def open_existing_store(settings: Settings) -> SqlMarketStore | None:
    """The configured store when there is one to read (PostgreSQL at ``database_url``, or the SQLite file that
    ``mikey data`` created), else None: readers such as the chat's news source never create an empty store."""
    if not settings.database_url and not settings.market_db.exists():
        return None
    return open_store(settings)
