"""Switchboard crossbar client: exact medians of simulated results, typed errors for everything else."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from mikey.errors import ConfigError, FeedError, InvalidInput, UnknownSymbol
from mikey.market.pyth import HermesClient
from mikey.market.switchboard import SwitchboardClient, median
from mikey.market.validation import check
from mikey.settings import Settings
from tests.fakes.oracle_server import FakeOracleServer, Script

# Test-only hashes: the client takes real ones from configuration, so any 32-byte hex string exercises it.
SOL_HASH = "0x" + "a1" * 32
BTC_HASH = "b2" * 32
NOW = datetime(2024, 5, 3, 14, 21, 45, tzinfo=UTC)


@pytest.fixture
def server() -> Iterator[FakeOracleServer]:
    with FakeOracleServer() as fake:
        yield fake


@pytest.fixture
def crossbar(server: FakeOracleServer) -> Iterator[SwitchboardClient]:
    with SwitchboardClient(server.base_url, {"SOL": SOL_HASH, "bitcoin": BTC_HASH}, timeout=0.5,
                           clock=lambda: NOW) as client:
        yield client


@pytest.mark.parametrize(("values", "expected"), [
    (["3"], "3"), (["1", "3", "2"], "2"), (["1", "2", "3", "4"], "2.5"),
    (["145.12345678", "145.12345679"], "145.123456785"),  # the mean of two middles, not rounded
    (["0.1", "0.2"], "0.15"), (["-1", "5", "2", "100"], "3.5"),
])
def test_median_is_exact(values: list[str], expected: str) -> None:
    assert median([Decimal(v) for v in values]) == Decimal(expected)


def test_median_of_30_digit_values_is_exact() -> None:
    a, b = Decimal("123456789012345.123456789012345"), Decimal("123456789012345.123456789012346")
    assert median([a, b]) == Decimal("123456789012345.1234567890123455")


def test_simulate_returns_the_median_of_results(server: FakeOracleServer, crossbar: SwitchboardClient) -> None:
    server.simulations[SOL_HASH[2:]] = [145.2, "145.23", 145.19]  # numbers and strings, as crossbar sends both
    quote = crossbar.quote("sol")
    assert (quote.symbol, quote.price, quote.source, quote.as_of) == ("SOL", Decimal("145.2"), "switchboard", NOW)
    assert quote.conf is None and quote.ema_price is None
    (request,) = server.requests
    assert request.path == f"/simulate/{SOL_HASH}" and "authorization" not in request.headers


def test_several_feeds_in_one_request_in_the_order_asked(server: FakeOracleServer,
                                                         crossbar: SwitchboardClient) -> None:
    server.simulations[SOL_HASH[2:]] = [145.2]
    server.simulations[BTC_HASH] = ["61409.93501", "61409.93502"]
    quotes = crossbar.latest(["BTC", "SOL"])
    assert [(q.symbol, q.price) for q in quotes] == [("BTC", Decimal("61409.935015")), ("SOL", Decimal("145.2"))]
    assert server.requests[0].path == f"/simulate/{BTC_HASH},{SOL_HASH}"


def test_null_results_are_left_out_of_the_median(server: FakeOracleServer, crossbar: SwitchboardClient) -> None:
    server.push(Script.json([{"feedHash": BTC_HASH, "results": [None, 10, 20, None, 30], "receipts": []}]))
    assert crossbar.quote("BTC").price == Decimal(20)


@pytest.mark.parametrize(("payload", "message"), [
    ({"feedHash": BTC_HASH}, "expected a list of simulations, got dict"),
    ([{"results": [1]}], "missing field 'feedHash'"),
    ([{"feedHash": BTC_HASH}], r"\(BTC\): missing field 'results'"),
    ([{"feedHash": BTC_HASH, "results": None, "error": "job timed out"}], "simulation failed: job timed out"),
    ([{"feedHash": BTC_HASH, "results": None}], "'results' is not a list: None"),
    ([{"feedHash": BTC_HASH, "results": []}], "the simulation produced no results"),
    ([{"feedHash": BTC_HASH, "results": [None]}], "the simulation produced no results"),
    ([{"feedHash": BTC_HASH, "results": ["abc"]}], r"results\[0\]: not a number: 'abc'"),
    ([{"feedHash": BTC_HASH, "results": [True]}], r"results\[0\]: not a number: True"),
    ([{"feedHash": BTC_HASH, "results": ["1e20"]}], "is not a plausible price"),
    ([{"feedHash": "c3" * 32, "results": [1]}], "unknown feed hash c3c3"),
    ([{"feedHash": SOL_HASH, "results": [1]}], r"feed hash 0xa1a1\w+ \(SOL\) was not requested"),
    ([{"feedHash": BTC_HASH, "results": [1]}, {"feedHash": BTC_HASH, "results": [1]}], "BTC simulated twice"),
    ([], "returned no simulation for BTC"),
])
def test_bad_simulations_are_typed_errors(server: FakeOracleServer, crossbar: SwitchboardClient, payload: object,
                                          message: str) -> None:
    server.push(Script.json(payload))
    with pytest.raises(FeedError, match=message):
        crossbar.quote("BTC")


@pytest.mark.parametrize(("script", "message"), [
    (Script.malformed_json(), "Switchboard crossbar sent malformed JSON"),
    (Script.raw('[{"feedHash": "' + BTC_HASH + '", "results": [NaN]}]'), "non-finite number NaN"),
    (Script.error(500), "Switchboard crossbar answered HTTP 500 Internal Server Error"),
    (Script.error(429, retry_after=2), r"HTTP 429 Too Many Requests \(rate limited; retry after 2s\)"),
    (Script.error(404, "feed not found"), "HTTP 404 Not Found: feed not found"),
])
def test_transport_and_body_failures(server: FakeOracleServer, crossbar: SwitchboardClient, script: Script,
                                     message: str) -> None:
    server.push(script)
    with pytest.raises(FeedError, match=message):
        crossbar.quote("BTC")


def test_a_hanging_crossbar_times_out(server: FakeOracleServer, crossbar: SwitchboardClient) -> None:
    server.push(Script.hang())
    started = time.monotonic()
    with pytest.raises(FeedError, match=r"Switchboard crossbar timed out after 0\.5s"):
        crossbar.quote("BTC")
    assert time.monotonic() - started < 3


def test_configuration_is_checked_up_front() -> None:
    with pytest.raises(ConfigError, match="not 64 hex digits"):
        SwitchboardClient("http://127.0.0.1:9", {"SOL": "0x1234"})
    with pytest.raises(ConfigError, match="unknown market 'DOGE'"):
        SwitchboardClient("http://127.0.0.1:9", {"DOGE": BTC_HASH})
    with SwitchboardClient("http://127.0.0.1:9", {"SOL": SOL_HASH}) as client:
        assert client.symbols() == ["SOL"]
        with pytest.raises(UnknownSymbol, match="supported markets: SOL"):
            client.quote("ETH")  # ETH has no configured hash
        with pytest.raises(InvalidInput):
            client.latest([])


def test_switchboard_serves_as_the_reference_for_pyth(server: FakeOracleServer, crossbar: SwitchboardClient,
                                                      tmp_path: Path) -> None:
    """The pipeline's cross-check: Pyth's BTC against Switchboard's, with the divergence rule deciding."""
    settings = Settings(home=tmp_path)
    with HermesClient(server.base_url, timeout=1) as hermes:
        (pyth,) = hermes.latest(["BTC"])
    now = pyth.as_of + timedelta(seconds=4)
    server.simulations[BTC_HASH] = ["61000"]  # 0.67 % away: within 2 %
    assert check(pyth, now=now, settings=settings, reference=crossbar.quote("BTC")).valid
    server.simulations[BTC_HASH] = ["65000"]  # 5.5 % away
    verdict = check(pyth, now=now, settings=settings, reference=crossbar.quote("BTC"))
    assert verdict.reasons == ["divergence: 61409.93501 differs 5.523176908% from switchboard 65000, limit 2%"]
