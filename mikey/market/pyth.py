"""Pyth oracle prices: Hermes for latest and streamed quotes, the benchmarks service for history, as a ``PriceFeed``.

Hermes publishes each price as an integer with an exponent, plus a confidence interval and an EMA price; they become
exact Decimals (``normalize.decimal_from``), so a quote equals what Pyth published. Every way the service can fail
(HTTP error, timeout, malformed JSON, a missing field, a feed id nobody asked for) becomes a ``FeedError`` saying
which, because a quietly wrong price is worse than none. Whether a well-formed price is *trustworthy* (fresh, tight,
consistent) is ``validation.py``'s question; ``PythFeed`` asks it before a quote leaves.

Feed ids are Pyth's mainnet ids (``../shared/fixtures/pyth/feeds.json``; Drift's perp market config uses the same).
Hermes answers with ids without ``0x``; both spellings are accepted. Since 2026-07-31 the public Hermes endpoint wants
``Authorization: Bearer <key>``; without a key none is sent (self-hosted Hermes, test servers).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx

from mikey.domain import Candle, Quote
from mikey.domain.utc import utc_now
from mikey.errors import FeedError, InvalidInput
from mikey.market.http import ApiKey, OwnedHttpClient, auth_headers, get_json, status_error, transport_error
from mikey.market.normalize import MAX_MAGNITUDE, Interval, decimal_from, normalize_feed_id, parse_json
from mikey.market.symbols import resolve_symbols
from mikey.market.validation import require_valid
from mikey.settings import Settings

FEED_IDS: dict[str, str] = {
    "SOL": "0xef0d8b6fda2ceba41da15d4095d1da392a0d2f8ed0c6c7bc0f4cfac8c280b56d",
    "BTC": "0xe62df6c8b4a85fe1a67db44dc12de5db330f7ac66b72dc658afedf0f4a415b43",
    "ETH": "0xff61491a931112ddf1bd8147cd1b641375f79f5825126d665480874634fd0ace",
}
BENCHMARK_RESOLUTIONS: dict[str, str] = {"1m": "1", "1h": "60", "1d": "D"}
DEFAULT_HISTORY = timedelta(days=365)  # enough daily bars for every indicator in analysis/indicators.py
HERMES = "Pyth Hermes"
BENCHMARKS = "Pyth benchmarks"


def _field(obj: Any, key: str, where: str) -> Any:
    if not isinstance(obj, dict):
        raise FeedError(f"{where}: expected an object, got {type(obj).__name__}")
    if key not in obj or obj[key] is None:
        raise FeedError(f"{where}: missing field {key!r}")
    return obj[key]


# --- Hermes -------------------------------------------------------------------------------------------------------


class HermesClient(OwnedHttpClient):
    """Latest and streamed Pyth prices from a Hermes server (``GET /v2/updates/price/latest|stream``)."""

    def __init__(self, base_url: str, api_key: ApiKey = None, timeout: float = 10.0,
                 client: httpx.Client | None = None, *, async_client: httpx.AsyncClient | None = None,
                 feed_ids: Mapping[str, str] | None = None) -> None:
        """A client for one Hermes server; nothing is sent before the first call.

        Args:
            base_url: Hermes root, e.g. ``https://hermes.pyth.network``.
            api_key: bearer key; None (or empty) sends no ``Authorization`` header.
            timeout: seconds for each request (for the stream: between two chunks, so a silent stream fails).
            client: an ``httpx.Client`` to reuse (not closed by ``close``); default: one of our own.
            async_client: the same for ``stream``; default: a fresh ``httpx.AsyncClient`` per stream.
            feed_ids: symbol -> Pyth feed id; default ``FEED_IDS`` (mainnet).
        """
        super().__init__(client, timeout=timeout)
        self.base_url = base_url.rstrip("/")
        self.feed_ids = dict(feed_ids or FEED_IDS)
        self._api_key = api_key
        self._async_client = async_client
        self._symbol_by_id = {normalize_feed_id(fid): symbol for symbol, fid in self.feed_ids.items()}

    def _query(self, symbols: list[str]) -> list[tuple[str, str]]:
        return [*(("ids[]", self.feed_ids[s]) for s in symbols), ("parsed", "true")]

    def latest(self, symbols: Iterable[str]) -> list[Quote]:
        """The latest quote of each symbol, in the order asked.

        Raises:
            UnknownSymbol: a symbol without a Pyth feed id.
            FeedError: HTTP error, timeout, malformed or incomplete payload, an unrequested or unknown feed id, a
                requested feed missing from the answer, a negative confidence.
        """
        wanted = resolve_symbols(symbols, self.feed_ids)
        payload = get_json(self._client, f"{self.base_url}/v2/updates/price/latest", source=HERMES,
                           params=self._query(wanted), headers=auth_headers(self._api_key), timeout=self.timeout)
        quotes = self.parse_update(payload, wanted)
        by_symbol: dict[str, Quote] = {}
        for quote in quotes:
            if quote.symbol in by_symbol:
                raise FeedError(f"{HERMES} returned {quote.symbol} twice")
            by_symbol[quote.symbol] = quote
        missing = [s for s in wanted if s not in by_symbol]
        if missing:
            raise FeedError(f"{HERMES} returned no price for {', '.join(missing)}")
        return [by_symbol[s] for s in wanted]

    async def stream(self, symbols: Iterable[str]) -> AsyncIterator[Quote]:
        """Quotes as Hermes pushes them over Server-Sent Events, in the order received.

        Each ``data:`` event has the shape of the latest response and may hold several feeds. The iterator ends when
        the server closes the stream (Hermes does after 24 hours); callers reconnect. Raises as ``latest`` does,
        also when the connection breaks mid-stream or no chunk arrives within ``timeout``.
        """
        wanted = resolve_symbols(symbols, self.feed_ids)
        client = self._async_client or httpx.AsyncClient(timeout=self.timeout)
        try:
            async with client.stream("GET", f"{self.base_url}/v2/updates/price/stream", params=self._query(wanted),
                                     headers=auth_headers(self._api_key, "text/event-stream"),
                                     timeout=self.timeout) as response:
                if response.status_code != 200:
                    await response.aread()
                    raise status_error(HERMES, response)
                async for data in sse_data(response.aiter_lines()):
                    for quote in self.parse_update(parse_json(data, f"{HERMES} stream"), wanted):
                        yield quote
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise transport_error(f"{HERMES} stream", exc, self.timeout) from exc
        finally:
            if self._async_client is None:
                await client.aclose()

    def parse_update(self, payload: Any, wanted: Iterable[str]) -> list[Quote]:
        """Quotes from one latest response or stream event (``{"parsed": [...]}``); every entry must be wanted."""
        wanted_ids = {normalize_feed_id(self.feed_ids[s]) for s in wanted}
        entries = _field(payload, "parsed", HERMES)
        if not isinstance(entries, list):
            raise FeedError(f"{HERMES}: 'parsed' is not a list")
        if not entries:
            raise FeedError(f"{HERMES}: 'parsed' is empty, the response holds no prices")
        return [self._parse_entry(entry, wanted_ids, f"{HERMES} parsed[{i}]") for i, entry in enumerate(entries)]

    def _parse_entry(self, entry: Any, wanted_ids: set[str], where: str) -> Quote:
        raw_id = _field(entry, "id", where)
        if not isinstance(raw_id, str):
            raise FeedError(f"{where}: feed id is not a string: {raw_id!r}")
        feed_id = normalize_feed_id(raw_id)
        symbol = self._symbol_by_id.get(feed_id)
        if symbol is None:
            raise FeedError(f"{where}: unknown feed id {raw_id}")
        if feed_id not in wanted_ids:
            raise FeedError(f"{where}: feed id {raw_id} ({symbol}) was not requested")
        where = f"{where} ({symbol})"
        price, conf, as_of = _price_part(entry, "price", where)
        ema, _, _ = _price_part(entry, "ema_price", where)
        return Quote(symbol=symbol, price=price, conf=conf, ema_price=ema, as_of=as_of, source="pyth")


def _price_part(entry: dict[str, Any], key: str, where: str) -> tuple[Decimal, Decimal, datetime]:
    """(value, confidence, publish time) of a ``price`` or ``ema_price`` object."""
    where = f"{where} {key}"
    part = _field(entry, key, where)
    expo = _field(part, "expo", where)
    values = []
    for name in ("price", "conf"):
        raw = _field(part, name, where)
        try:
            values.append(decimal_from(raw, expo))
        except FeedError as exc:
            raise FeedError(f"{where}.{name}: {exc}") from exc
    price, conf = values
    if conf < 0:
        raise FeedError(f"{where}: negative confidence interval {conf}")
    published = _field(part, "publish_time", where)
    if isinstance(published, bool) or not isinstance(published, int) or published <= 0:
        raise FeedError(f"{where}: publish_time is not a positive unix time: {published!r}")
    try:
        as_of = datetime.fromtimestamp(published, UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise FeedError(f"{where}: publish_time {published} is out of range") from exc
    return price, conf, as_of


async def sse_data(lines: AsyncIterator[str]) -> AsyncIterator[str]:
    """The ``data`` of each Server-Sent Event (multi-line data joined by newlines), per the WHATWG rules that matter
    here: comments and other fields are skipped, and an event cut off before its blank line is dropped."""
    data: list[str] = []
    async for line in lines:
        if not line:
            if data:
                yield "\n".join(data)
            data = []
        elif line.startswith("data"):
            name, _, value = line.partition(":")
            if name == "data":
                data.append(value[1:] if value.startswith(" ") else value)


# --- benchmarks (history) -----------------------------------------------------------------------------------------


class BenchmarksClient(OwnedHttpClient):
    """Historical Pyth bars from the benchmarks service's TradingView shim (``/v1/shims/tradingview/history``)."""

    def __init__(self, base_url: str, api_key: ApiKey = None, timeout: float = 10.0,
                 client: httpx.Client | None = None) -> None:
        super().__init__(client, timeout=timeout)
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key

    def history(self, symbol: str, interval: Interval, start: datetime, end: datetime) -> list[Candle]:
        """Bars of ``interval`` opening between ``start`` and ``end`` (inclusive), oldest first; [] when there are none.

        Raises:
            FeedError: HTTP error, timeout, ``{"s": "error"}``, or a malformed payload (ragged arrays, non-numbers,
                times out of order, a high below a low).
        """
        (symbol,) = resolve_symbols([symbol], FEED_IDS)
        if interval not in BENCHMARK_RESOLUTIONS:
            raise InvalidInput(f"unknown candle interval {interval!r}; intervals: {', '.join(BENCHMARK_RESOLUTIONS)}")
        if start.tzinfo is None or end.tzinfo is None:
            raise InvalidInput("history start and end must be timezone-aware (UTC)")
        if start > end:
            raise InvalidInput(f"history start {start.isoformat()} is after end {end.isoformat()}")
        params = {"symbol": f"Crypto.{symbol}/USD", "resolution": BENCHMARK_RESOLUTIONS[interval],
                  "from": int(start.timestamp()), "to": int(end.timestamp())}
        payload = get_json(self._client, f"{self.base_url}/v1/shims/tradingview/history", source=BENCHMARKS,
                           params=params, headers=auth_headers(self._api_key), timeout=self.timeout)
        return [c for c in parse_history(payload, symbol) if start <= c.ts <= end]


def parse_history(payload: Any, symbol: str) -> list[Candle]:
    """Candles from a TradingView-style history answer (``{"s": "ok", "t": [...], "o": [...], ...}``)."""
    status = _field(payload, "s", BENCHMARKS)
    if status == "no_data":
        return []
    if status == "error":
        raise FeedError(f"{BENCHMARKS} error: {payload.get('errmsg') or 'no message'}")
    if status != "ok":
        raise FeedError(f"{BENCHMARKS}: unknown status {status!r}")
    columns = {key: _field(payload, key, BENCHMARKS) for key in ("t", "o", "h", "l", "c")}
    columns["v"] = payload.get("v") or [0] * len(columns["t"])
    for key, column in columns.items():
        if not isinstance(column, list) or len(column) != len(columns["t"]):
            raise FeedError(f"{BENCHMARKS}: column {key!r} is not a list as long as 't'")
    candles: list[Candle] = []
    for i, stamp in enumerate(columns["t"]):
        where = f"{BENCHMARKS} bar {i}"
        if isinstance(stamp, bool) or not isinstance(stamp, int):
            raise FeedError(f"{where}: time is not a unix integer: {stamp!r}")
        try:
            ts = datetime.fromtimestamp(stamp, UTC)
        except (OverflowError, OSError, ValueError) as exc:
            raise FeedError(f"{where}: time {stamp} is out of range") from exc
        o, h, lo, c, v = (_bar_number(columns[k][i], f"{where} {k}") for k in "ohlcv")
        if candles and ts <= candles[-1].ts:
            raise FeedError(f"{where}: time {ts.isoformat()} is not after the previous bar")
        if not lo <= min(o, c) <= max(o, c) <= h or v < 0:
            raise FeedError(f"{where}: inconsistent bar o={o} h={h} l={lo} c={c} v={v}")
        candles.append(Candle(symbol=symbol, ts=ts, open=o, high=h, low=lo, close=c, volume=v))
    return candles


def _bar_number(value: Any, where: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise FeedError(f"{where}: not a number: {value!r}")
    number = Decimal(value)
    if abs(number) >= MAX_MAGNITUDE:
        raise FeedError(f"{where}: {number} is too large to be a price")
    return number


# --- the PriceFeed ------------------------------------------------------------------------------------------------


class PythFeed:
    """A ``PriceFeed`` over Pyth: quotes from Hermes (validated when settings are given), daily bars from benchmarks."""

    name = "pyth"

    def __init__(self, hermes: HermesClient, benchmarks: BenchmarksClient, *, settings: Settings | None = None,
                 clock: Callable[[], datetime] = utc_now) -> None:
        """A feed over the two clients, which it closes on ``close``.

        Args:
            settings: validation thresholds; when set, ``quote`` raises ``StalePrice``/``InvalidPrice`` instead of
                returning a price that fails ``validation.check``. None returns prices unchecked (tests, tools).
            clock: "now" for validation and the default end of ``candles``.
        """
        self.hermes = hermes
        self.benchmarks = benchmarks
        self.settings = settings
        self.clock = clock
        self._last_valid: dict[str, Quote] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> PythFeed:
        """The feed the composition root builds when ``settings.feed == "pyth"``. The Hermes key is not sent to the
        benchmarks service, which does not ask for one."""
        hermes = HermesClient(settings.pyth_url, settings.pyth_api_key, settings.http_timeout)
        benchmarks = BenchmarksClient(settings.pyth_benchmarks_url, None, settings.http_timeout)
        return cls(hermes, benchmarks, settings=settings)

    def close(self) -> None:
        self.hermes.close()
        self.benchmarks.close()

    def __enter__(self) -> PythFeed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def symbols(self) -> list[str]:
        return sorted(self.hermes.feed_ids)

    def quote(self, symbol: str) -> Quote:
        quote = self.hermes.latest([symbol])[0]
        if self.settings is None:
            return quote
        quote = require_valid(quote, now=self.clock(), settings=self.settings,
                              last_valid=self._last_valid.get(quote.symbol))
        self._last_valid[quote.symbol] = quote
        return quote

    def candles(self, symbol: str, *, start: datetime | None = None, end: datetime | None = None) -> list[Candle]:
        """Daily bars, oldest first; ``end`` defaults to now and ``start`` to a year before ``end``."""
        end = end or self.clock()
        return self.benchmarks.history(symbol, "1d", start or end - DEFAULT_HISTORY, end)
