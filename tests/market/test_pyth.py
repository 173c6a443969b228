"""Pyth clients against a fake Hermes/benchmarks server serving the real fixture payload and scripted faults."""

from __future__ import annotations

import asyncio
import copy
import json
import socket
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from mikey.errors import FeedError, InvalidInput, InvalidPrice, StalePrice, UnknownSymbol
from mikey.market.feed import PriceFeed
from mikey.market.pyth import FEED_IDS, BenchmarksClient, HermesClient, PythFeed
from mikey.settings import Settings
from tests.fakes.oracle_server import FakeOracleServer, Script, pyth_fixture

BTC_ID = FEED_IDS["BTC"]
PUBLISHED = datetime(2024, 5, 3, 14, 21, 41, tzinfo=UTC)  # the fixture's publish_time, 1714746101


@pytest.fixture
def server() -> Iterator[FakeOracleServer]:
    with FakeOracleServer() as fake:
        yield fake


@pytest.fixture
def hermes(server: FakeOracleServer) -> Iterator[HermesClient]:
    with HermesClient(server.base_url, None, timeout=0.5) as client:
        yield client


@pytest.fixture
def bench(server: FakeOracleServer) -> Iterator[BenchmarksClient]:
    with BenchmarksClient(server.base_url, timeout=0.5) as client:
        yield client


def btc_entry() -> dict[str, Any]:
    return copy.deepcopy(pyth_fixture("hermes_latest_btc.json")["parsed"][0])


def entry_for(symbol: str, price: str, publish_time: int = 1714746101, expo: int = -8) -> dict[str, Any]:
    """A Hermes entry shaped like the real one, for another feed or price."""
    entry = btc_entry()
    entry["id"] = FEED_IDS[symbol].removeprefix("0x")
    entry["price"].update(price=price, publish_time=publish_time, expo=expo)
    entry["ema_price"].update(price=price, publish_time=publish_time, expo=expo)
    return entry


def update(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"binary": {"encoding": "hex", "data": []}, "parsed": list(entries)}


def collect(stream: AsyncIterator[Any], limit: int = 100) -> list[Any]:
    async def run() -> list[Any]:
        out: list[Any] = []
        async with aclosing(stream) as items:  # type: ignore[type-var]
            async for item in items:
                out.append(item)
                if len(out) >= limit:
                    break
        return out

    return asyncio.run(run())


# --- the real fixture -----------------------------------------------------------------------------------------------


def test_latest_parses_the_real_btc_payload_exactly(server: FakeOracleServer, hermes: HermesClient) -> None:
    (quote,) = hermes.latest(["BTC"])
    assert quote.symbol == "BTC" and quote.source == "pyth"
    assert quote.price == Decimal("61409.93501") and str(quote.price) == "61409.93501"
    assert quote.conf == Decimal("32.87868567")
    assert quote.ema_price == Decimal("60940.047")
    assert quote.as_of == PUBLISHED and quote.as_of.tzinfo is not None
    (request,) = server.requests
    assert request.path == "/v2/updates/price/latest"
    assert request.params("ids[]") == [BTC_ID] and request.params("parsed") == ["true"]


def test_latest_accepts_any_symbol_spelling_and_keeps_the_order_asked(server: FakeOracleServer,
                                                                     hermes: HermesClient) -> None:
    server.add_price(entry_for("SOL", "14523000000"))
    quotes = hermes.latest(["sol", "$BTC", "SOL-PERP"])
    assert [(q.symbol, q.price) for q in quotes] == [("SOL", Decimal("145.23")), ("BTC", Decimal("61409.93501"))]
    assert server.requests[0].params("ids[]") == [FEED_IDS["SOL"], BTC_ID]


def test_feed_ids_with_or_without_0x_are_accepted(server: FakeOracleServer, hermes: HermesClient) -> None:
    entry = btc_entry()
    entry["id"] = "0x" + entry["id"].upper()
    server.push(Script.json(update(entry)))
    assert hermes.latest(["BTC"])[0].price == Decimal("61409.93501")


# --- authentication -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("key", "header"), [(None, None), ("", None), ("k-123", "Bearer k-123"),
                                             (SecretStr("s3cret"), "Bearer s3cret")])
def test_bearer_header_only_when_a_key_is_set(server: FakeOracleServer, key: Any, header: str | None) -> None:
    with HermesClient(server.base_url, key, timeout=1) as client:
        client.latest(["BTC"])
    assert server.requests[-1].headers.get("authorization") == header


# --- bad payloads ---------------------------------------------------------------------------------------------------


def test_malformed_json_is_a_feed_error(server: FakeOracleServer, hermes: HermesClient) -> None:
    server.push(Script.malformed_json())
    with pytest.raises(FeedError, match="Pyth Hermes sent malformed JSON"):
        hermes.latest(["BTC"])


@pytest.mark.parametrize(("path", "field"), [
    ((), "parsed"), ((0,), "id"), ((0,), "price"), ((0,), "ema_price"), ((0, "price"), "price"),
    ((0, "price"), "conf"), ((0, "price"), "expo"), ((0, "price"), "publish_time"), ((0, "ema_price"), "expo"),
])
def test_missing_fields_are_named(server: FakeOracleServer, hermes: HermesClient, path: tuple[Any, ...],
                                  field: str) -> None:
    payload = update(btc_entry())
    node: Any = payload["parsed"] if path else payload
    for step in path:
        node = node[step]
    del node[field]
    server.push(Script.json(payload))
    with pytest.raises(FeedError, match=f"missing field '{field}'"):
        hermes.latest(["BTC"])


@pytest.mark.parametrize(("change", "message"), [
    ({"conf": "-3287868567"}, r"negative confidence interval -32\.87868567"),
    ({"price": "61409.93501"}, r"price\.price: expected an integer, got '61409\.93501'"),
    ({"price": 6.14e12}, "expected an integer"),
    ({"price": str(2**63)}, "overflows a signed 64-bit price"),
    ({"expo": "-8"}, "integer exponent"),
    ({"publish_time": "1714746101"}, "publish_time is not a positive unix time"),
    ({"publish_time": -5}, "publish_time is not a positive unix time"),
    ({"publish_time": 10**15}, "publish_time 1000000000000000 is out of range"),
])
def test_bad_values_are_refused(server: FakeOracleServer, hermes: HermesClient, change: dict[str, Any],
                                message: str) -> None:
    entry = btc_entry()
    entry["price"].update(change)
    server.push(Script.json(update(entry)))
    with pytest.raises(FeedError, match=message):
        hermes.latest(["BTC"])


def test_an_unrequested_feed_id_is_refused(server: FakeOracleServer, hermes: HermesClient) -> None:
    server.push(Script.json(update(btc_entry(), entry_for("ETH", "300000000000"))))
    with pytest.raises(FeedError, match=r"feed id ff61491a\w+ \(ETH\) was not requested"):
        hermes.latest(["BTC"])


def test_an_unknown_feed_id_is_refused(server: FakeOracleServer, hermes: HermesClient) -> None:
    entry = btc_entry()
    entry["id"] = "ab" * 32
    server.push(Script.json(update(entry)))
    with pytest.raises(FeedError, match="unknown feed id abab"):
        hermes.latest(["BTC"])


@pytest.mark.parametrize(("payload", "message"), [
    (update(), "'parsed' is empty"),
    ({"parsed": {"id": "x"}}, "'parsed' is not a list"),
    ([], "expected an object, got list"),
    (update("not an object"), r"parsed\[0\]: expected an object, got str"),
])
def test_empty_or_misshapen_parsed_is_refused(server: FakeOracleServer, hermes: HermesClient, payload: Any,
                                              message: str) -> None:
    server.push(Script.json(payload))
    with pytest.raises(FeedError, match=message):
        hermes.latest(["BTC"])


def test_a_requested_feed_missing_from_the_answer_is_refused(server: FakeOracleServer, hermes: HermesClient) -> None:
    server.add_price(entry_for("SOL", "14523000000"))
    server.push(Script.json(update(btc_entry())))
    with pytest.raises(FeedError, match="returned no price for SOL"):
        hermes.latest(["BTC", "SOL"])
    server.push(Script.json(update(btc_entry(), btc_entry())))
    with pytest.raises(FeedError, match="returned BTC twice"):
        hermes.latest(["BTC"])


def test_unknown_symbols_and_empty_requests_fail_before_any_request(server: FakeOracleServer,
                                                                    hermes: HermesClient) -> None:
    with pytest.raises(UnknownSymbol, match="unknown market 'DOGE'"):
        hermes.latest(["BTC", "DOGE"])
    with pytest.raises(InvalidInput):
        hermes.latest([])
    assert server.requests == []


# --- transport failures ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("script", "message"), [
    (Script.error(500, "internal error"), "Pyth Hermes answered HTTP 500 Internal Server Error: internal error"),
    (Script.error(401, "missing bearer token"), r"HTTP 401 Unauthorized \(API key missing or refused\)"),
    (Script.error(403), r"HTTP 403 Forbidden \(API key missing or refused\)"),
    (Script.error(429, retry_after=3), r"HTTP 429 Too Many Requests \(rate limited; retry after 3s\)"),
    (Script.error(404, "Price ids not found: 0xdead"), "HTTP 404 Not Found: Price ids not found: 0xdead"),
])
def test_http_errors_name_the_status(server: FakeOracleServer, hermes: HermesClient, script: Script,
                                     message: str) -> None:
    server.push(script)
    with pytest.raises(FeedError, match=message):
        hermes.latest(["BTC"])


def test_a_hanging_server_times_out(server: FakeOracleServer, hermes: HermesClient) -> None:
    server.push(Script.hang())
    started = time.monotonic()
    with pytest.raises(FeedError, match=r"Pyth Hermes timed out after 0\.5s \(ReadTimeout\)"):
        hermes.latest(["BTC"])
    assert time.monotonic() - started < 3


def test_an_unreachable_server_is_a_feed_error() -> None:
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with HermesClient(f"http://127.0.0.1:{port}", timeout=1) as client, \
            pytest.raises(FeedError, match="Pyth Hermes request failed: ConnectError"):
        client.latest(["BTC"])


def test_an_injected_client_is_used_and_left_open(server: FakeOracleServer) -> None:
    with httpx.Client() as shared:
        client = HermesClient(server.base_url, client=shared)
        client.latest(["BTC"])
        client.close()
        assert not shared.is_closed


# --- SSE stream -----------------------------------------------------------------------------------------------------


def test_stream_yields_the_fixture_then_ends_when_the_server_closes(server: FakeOracleServer,
                                                                   hermes: HermesClient) -> None:
    quotes = collect(hermes.stream(["BTC"]))
    assert [(q.symbol, q.price, q.conf, q.as_of) for q in quotes] == [
        ("BTC", Decimal("61409.93501"), Decimal("32.87868567"), PUBLISHED)]
    (request,) = server.requests
    assert request.path == "/v2/updates/price/stream"
    assert request.params("ids[]") == [BTC_ID] and request.params("parsed") == ["true"]
    assert request.headers["accept"] == "text/event-stream" and "authorization" not in request.headers


def test_stream_yields_quotes_in_the_order_sent(server: FakeOracleServer) -> None:
    events = [update(entry_for("BTC", "6140000000000", 1714746101)),
              update(entry_for("SOL", "14500000000", 1714746101), entry_for("BTC", "6141000000000", 1714746102)),
              update(entry_for("SOL", "14510000000", 1714746103))]
    server.push(Script.sse(events, event_delay=0.01))
    with HermesClient(server.base_url, "key-1", timeout=1) as client:
        quotes = collect(client.stream(["BTC", "SOL"]))
    assert [(q.symbol, q.price, q.as_of.second) for q in quotes] == [
        ("BTC", Decimal("61400"), 41), ("SOL", Decimal("145"), 41), ("BTC", Decimal("61410"), 42),
        ("SOL", Decimal("145.1"), 43)]
    assert server.requests[0].headers["authorization"] == "Bearer key-1"


def test_stream_follows_the_sse_framing(server: FakeOracleServer, hermes: HermesClient) -> None:
    text = json.dumps(update(btc_entry()))
    half = text.index(", ") + 1  # multi-line data is joined with a newline, so split between JSON tokens
    server.push(Script.sse([b": keep-alive comment\n\n", b"event: price_update\nid: 7\n",
                            f"data: {text[:half]}\ndata:{text[half:]}\n\n".encode(), b"retry: 1000\n\n",
                            f"data: {text}\r\n\r\n".encode(), f"data: {text}".encode()]))  # last: never finished
    quotes = collect(hermes.stream(["BTC"]))
    assert [q.price for q in quotes] == [Decimal("61409.93501")] * 2


def test_a_consumer_may_stop_early(server: FakeOracleServer, hermes: HermesClient) -> None:
    server.push(Script.sse([update(btc_entry())] * 5, then="hang"))
    assert len(collect(hermes.stream(["BTC"]), limit=2)) == 2


@pytest.mark.parametrize(("script", "message"), [
    (Script.error(401, "no key"), r"answered HTTP 401 Unauthorized \(API key missing or refused\): no key"),
    (Script.error(500), "answered HTTP 500"),
    (Script.sse(['{"parsed": [']), "Pyth Hermes stream sent malformed JSON"),
    (Script.sse([update()]), "'parsed' is empty"),
    (Script.sse([update(entry_for("ETH", "300000000000"))]), r"\(ETH\) was not requested"),
])
def test_stream_failures_are_typed(server: FakeOracleServer, hermes: HermesClient, script: Script,
                                   message: str) -> None:
    server.push(script)
    with pytest.raises(FeedError, match=message):
        collect(hermes.stream(["BTC"]))


def test_a_silent_stream_times_out_after_what_it_delivered(server: FakeOracleServer, hermes: HermesClient) -> None:
    server.push(Script.sse([update(btc_entry())], then="hang"))
    seen: list[Any] = []

    async def run() -> None:
        async with aclosing(hermes.stream(["BTC"])) as stream:
            async for quote in stream:
                seen.append(quote)

    with pytest.raises(FeedError, match=r"Pyth Hermes stream timed out after 0\.5s \(ReadTimeout\)"):
        asyncio.run(run())
    assert len(seen) == 1


def test_a_stream_cut_mid_event_is_a_feed_error(server: FakeOracleServer, hermes: HermesClient) -> None:
    server.push(Script.sse([update(btc_entry())], then="abort"))
    with pytest.raises(FeedError, match="Pyth Hermes stream request failed: RemoteProtocolError"):
        collect(hermes.stream(["BTC"]))


def test_a_hanging_stream_times_out(server: FakeOracleServer, hermes: HermesClient) -> None:
    server.push(Script.hang())
    with pytest.raises(FeedError, match="stream timed out after 0.5s"):
        collect(hermes.stream(["BTC"]))


# --- benchmarks history ---------------------------------------------------------------------------------------------

HISTORY = ('{"s":"ok","t":[1714608000,1714694400,1714780800],"o":[57081.93,59112.66999999,59093.43],'
           '"h":[59447.53,59600.5,63443.0],"l":[56576.1,58810.02,58813.3],"c":[59112.66999999,59093.43,62890.01],'
           '"v":[0,0,0]}')


def day(n: int) -> datetime:
    return datetime(2024, 5, n, tzinfo=UTC)


def test_history_parses_exactly_and_sends_tradingview_parameters(server: FakeOracleServer,
                                                                 bench: BenchmarksClient) -> None:
    server.push(Script.raw(HISTORY))
    candles = bench.history("SOL", "1d", day(1), day(4))
    assert [c.ts for c in candles] == [day(2), day(3), day(4)]
    first = candles[0]
    assert (first.symbol, first.open, first.high, first.low, first.close, first.volume) == (
        "SOL", Decimal("57081.93"), Decimal("59447.53"), Decimal("56576.1"), Decimal("59112.66999999"), Decimal(0))
    assert str(candles[2].high) == "63443.0"  # the text as sent, not a float's neighbour
    (request,) = server.requests
    assert request.path == "/v1/shims/tradingview/history"
    assert dict(request.query) == {"symbol": "Crypto.SOL/USD", "resolution": "D", "from": str(int(day(1).timestamp())),
                                   "to": str(int(day(4).timestamp()))}


@pytest.mark.parametrize(("interval", "resolution"), [("1m", "1"), ("1h", "60"), ("1d", "D")])
def test_history_resolutions(server: FakeOracleServer, bench: BenchmarksClient, interval: str,
                             resolution: str) -> None:
    assert bench.history("BTC", interval, day(1), day(2)) == []  # type: ignore[arg-type]  # the default: no_data
    assert server.requests[-1].params("resolution") == [resolution]
    assert server.requests[-1].params("symbol") == ["Crypto.BTC/USD"]


def test_history_keeps_only_bars_in_range_and_defaults_volume(server: FakeOracleServer,
                                                             bench: BenchmarksClient) -> None:
    server.push(Script.raw('{"s":"ok","t":[1714608000,1714694400],"o":[1,2],"h":[1,2],"l":[1,2],"c":[1,2]}'))
    candles = bench.history("ETH", "1d", day(3), day(3))
    assert [(c.ts, c.close, c.volume) for c in candles] == [(day(3), Decimal(2), Decimal(0))]


@pytest.mark.parametrize(("body", "message"), [
    ('{"s":"error","errmsg":"Symbol not found"}', "Pyth benchmarks error: Symbol not found"),
    ('{"s":"weird"}', "unknown status 'weird'"),
    ('{"t":[]}', "missing field 's'"),
    ('{"s":"ok","t":[1714608000],"o":[1],"h":[1],"l":[1]}', "missing field 'c'"),
    ('{"s":"ok","t":[1714608000,1714694400],"o":[1],"h":[1,2],"l":[1,2],"c":[1,2]}', "column 'o' is not a list"),
    ('{"s":"ok","t":[1714608000],"o":["1.0"],"h":[1],"l":[1],"c":[1]}', "bar 0 o: not a number: '1.0'"),
    ('{"s":"ok","t":[1714608000.5],"o":[1],"h":[1],"l":[1],"c":[1]}', "time is not a unix integer"),
    ('{"s":"ok","t":[1714694400,1714608000],"o":[1,1],"h":[1,1],"l":[1,1],"c":[1,1]}', "is not after the previous"),
    ('{"s":"ok","t":[1714608000],"o":[1],"h":[0.5],"l":[1],"c":[1]}', "inconsistent bar o=1 h=0.5"),
    ('{"s":"ok","t":[1714608000],"o":[1e20],"h":[1e20],"l":[1],"c":[1]}', "too large to be a price"),
    ('{"s":"ok","t":[1714608000],"o":[NaN],"h":[1],"l":[1],"c":[1]}', "malformed JSON"),
])
def test_history_refuses_bad_answers(server: FakeOracleServer, bench: BenchmarksClient, body: str,
                                     message: str) -> None:
    server.push(Script.raw(body))
    with pytest.raises(FeedError, match=message):
        bench.history("SOL", "1d", day(1), day(4))


def test_history_transport_failures_and_bad_requests(server: FakeOracleServer, bench: BenchmarksClient) -> None:
    server.push(Script.error(500), Script.hang())
    with pytest.raises(FeedError, match="Pyth benchmarks answered HTTP 500"):
        bench.history("SOL", "1d", day(1), day(4))
    with pytest.raises(FeedError, match="Pyth benchmarks timed out after 0.5s"):
        bench.history("SOL", "1d", day(1), day(4))
    with pytest.raises(InvalidInput, match="is after end"):
        bench.history("SOL", "1d", day(4), day(1))
    with pytest.raises(InvalidInput, match="timezone-aware"):
        bench.history("SOL", "1d", datetime(2024, 5, 1), day(4))
    with pytest.raises(InvalidInput, match="unknown candle interval"):
        bench.history("SOL", "5m", day(1), day(4))  # type: ignore[arg-type]


# --- PythFeed -------------------------------------------------------------------------------------------------------


def make_feed(server: FakeOracleServer, tmp_path: Path, now: datetime | None, **overrides: Any) -> PythFeed:
    settings = Settings(home=tmp_path, pyth_url=server.base_url, pyth_benchmarks_url=server.base_url,
                        http_timeout=0.5, **overrides)
    feed = PythFeed.from_settings(settings)
    if now is not None:
        feed.clock = lambda: now
    return feed


def test_pyth_feed_is_a_price_feed_serving_validated_quotes(server: FakeOracleServer, tmp_path: Path) -> None:
    with make_feed(server, tmp_path, PUBLISHED + timedelta(seconds=10), pyth_api_key="hermes-key") as feed:
        price_feed: PriceFeed = feed
        assert price_feed.name == "pyth" and price_feed.symbols() == ["BTC", "ETH", "SOL"]
        quote = price_feed.quote("btc")
    assert quote.price == Decimal("61409.93501")
    assert server.requests[0].headers["authorization"] == "Bearer hermes-key"


def test_pyth_feed_refuses_stale_and_out_of_order_prices(server: FakeOracleServer, tmp_path: Path) -> None:
    with make_feed(server, tmp_path, PUBLISHED + timedelta(seconds=61)) as feed:
        with pytest.raises(StalePrice, match="BTC price from pyth rejected: stale: published 61s ago"):
            feed.quote("BTC")
        feed.clock = lambda: PUBLISHED + timedelta(seconds=5)
        feed.quote("BTC")
        server.push(Script.json(update(entry_for("BTC", "6140993501000", 1714746100))))
        with pytest.raises(InvalidPrice, match="out of order"):
            feed.quote("BTC")
    with PythFeed(HermesClient(server.base_url), BenchmarksClient(server.base_url)) as unchecked:
        assert unchecked.quote("BTC").as_of == PUBLISHED  # without settings, no validation


def test_pyth_feed_refuses_a_wide_confidence(server: FakeOracleServer, tmp_path: Path) -> None:
    entry = btc_entry()
    entry["price"]["conf"] = "200000000000"  # 2000 USD on 61409: 3.3 %
    server.push(Script.json(update(entry)))
    with make_feed(server, tmp_path, PUBLISHED) as feed, pytest.raises(InvalidPrice, match="wide conf"):
        feed.quote("BTC")


def test_pyth_feed_candles_are_daily_and_default_to_a_year_up_to_now(server: FakeOracleServer,
                                                                     tmp_path: Path) -> None:
    server.push(Script.raw(HISTORY))
    with make_feed(server, tmp_path, day(4)) as feed:
        candles = feed.candles("SOL")
    assert [c.close for c in candles] == [Decimal("59112.66999999"), Decimal("59093.43"), Decimal("62890.01")]
    request = server.requests[0]
    assert request.params("resolution") == ["D"]
    assert request.params("from") == [str(int((day(4) - timedelta(days=365)).timestamp()))]
    assert request.params("to") == [str(int(day(4).timestamp()))]
    assert "authorization" not in request.headers  # the Hermes key stays with Hermes
