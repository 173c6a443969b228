"""``POST /v1/risk/assess`` and ``GET /healthz`` through FastAPI's TestClient, with dependency overrides.

The app runs its real lifespan (replay feed over the bundled history); tests that need other history, limits or
tiers replace the ``get_risk_service`` dependency, e.g. with a cache seeded from a CSV exactly as
``mikey risk assess --history`` reads it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime

import numpy as np
import pytest
from fastapi.testclient import TestClient

from mikey.api.app import STATUS, HistoryCache, RiskService, create_app, get_risk_service, status_for
from mikey.domain import Candle, PositionInput, Quote, RiskAssessment
from mikey.errors import (
    ConfigError,
    DataUnavailable,
    FeedError,
    InvalidInput,
    MikeyError,
    ProviderUnavailable,
    RateLimited,
    StalePrice,
    UnknownSymbol,
)
from mikey.market.replay import ReplayFeed
from mikey.risk.assess import assess
from mikey.risk.checks import RiskLimits
from mikey.risk.liquidation import single_tier
from mikey.tools.risk import history_from_feed
from tests.fakes.risk_api import CONTRACT_FIELDS, POSITION, URL, csv_cache, history_csv


@pytest.fixture
def app(settings):
    return create_app(settings)


@pytest.fixture
def client(app) -> Iterator[TestClient]:
    with TestClient(app) as c:  # runs the lifespan: feed and history cache built once
        yield c


def post(client: TestClient, body: dict | str):
    content = body if isinstance(body, str) else json.dumps(body)
    return client.post(URL, content=content, headers={"content-type": "application/json"})


# Valid requests ----------------------------------------------------------------------------------------------------

def test_valid_request_returns_every_contract_field(client) -> None:
    resp = post(client, POSITION)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    for name in CONTRACT_FIELDS:
        assert name in body, name
    result = RiskAssessment.model_validate(body)
    assert result.market == "SOL" and result.side == "long"
    assert result.history_bars == 365
    assert result.checks and result.reasons
    for name in ("var_95", "cvar_95", "var_99", "cvar_99", "volatility_annualized", "max_drawdown", "risk_score"):
        assert np.isfinite(getattr(result, name)), name
    assert result.cvar_99 >= result.var_99 >= result.var_95 > 0


def test_alias_market_and_feed_history_match_the_engine(client) -> None:
    """'sol-perp' is SOL; the answer is the engine's own on the feed's last 365 closes at the feed's quote."""
    body = {**POSITION, "side": "short", "margin_mode": "cross", "leverage": 5}
    resp = post(client, {**body, "market": "sol-perp"})
    assert resp.status_code == 200, resp.text
    history = history_from_feed(ReplayFeed(), "SOL")
    position = PositionInput(**body)
    expected = assess(position, closes=history.closes, returns=None, current_price=history.price, as_of=history.as_of)
    assert RiskAssessment.model_validate_json(resp.content) == expected


def test_returns_replace_the_history(client) -> None:
    """Given ``returns``, the market-risk figures rest on them: VaR is minus their interpolated 5% quantile."""
    rng = np.random.default_rng(6)
    returns = [float(r) for r in rng.normal(0, 0.03, 250)]
    with_returns = post(client, {**POSITION, "returns": returns})
    without = post(client, POSITION)
    assert with_returns.status_code == 200, with_returns.text
    got = with_returns.json()
    assert got["var_95"] == pytest.approx(-np.quantile(returns, 0.05), rel=1e-12)
    assert got["var_99"] == pytest.approx(-np.quantile(returns, 0.01), rel=1e-12)
    assert got["var_95"] != without.json()["var_95"]
    short = post(client, {**POSITION, "side": "short", "returns": returns}).json()
    assert short["var_95"] == pytest.approx(-np.quantile(-np.asarray(returns), 0.05), rel=1e-12)


def test_history_override_is_used_and_matches_the_engine(app, tmp_path) -> None:
    cache = csv_cache(history_csv(tmp_path))
    app.dependency_overrides[get_risk_service] = lambda: RiskService(cache)
    with TestClient(app) as client:
        resp = post(client, POSITION)
    assert resp.status_code == 200, resp.text
    history = cache.get("SOL")
    result = RiskAssessment.model_validate_json(resp.content)
    assert result.as_of == history.as_of == history.closes.index[-1]
    assert result.entry_price == history.price == history.closes.iloc[-1]
    expected = assess(PositionInput(**POSITION), closes=history.closes, returns=None, current_price=history.price,
                      as_of=history.as_of)
    assert result == expected


def test_breached_limits_are_failed_checks_not_errors(client) -> None:
    resp = post(client, {**POSITION, "size": 1000, "collateral": 900})  # about 24x against a 20x limit
    assert resp.status_code == 200, resp.text
    body = resp.json()
    failed = {check["name"] for check in body["checks"] if not check["passed"]}
    assert "max_leverage" in failed
    assert body["risk_level"] == "CRITICAL"


def test_limits_and_tiers_come_from_the_service(app) -> None:
    service = RiskService(HistoryCache(ReplayFeed()), limits=RiskLimits(max_position_notional=100),
                          tiers={"SOL": single_tier(0.05, 0.0)})
    app.dependency_overrides[get_risk_service] = lambda: service
    with TestClient(app) as client:
        body = post(client, POSITION).json()
    size_check = next(c for c in body["checks"] if c["name"] == "max_position_size")
    assert size_check["passed"] is False and size_check["limit"] == 100
    assert body["margin_ratio"] == pytest.approx(body["notional"] * 0.05 / body["collateral"])


def test_healthz_names_the_loaded_markets(client) -> None:
    resp = client.get("/healthz")
    assert resp.status_code == 200
    body = resp.json()
    assert body["status"] == "ok" and body["feed"] == "replay"
    assert set(body["markets"]) == {"BTC", "ETH", "SOL"}
    assert body["markets"]["SOL"]["bars"] == 365


def test_openapi_documents_request_and_response(client) -> None:
    operation = client.get("/openapi.json").json()["paths"][URL]["post"]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    assert {"market", "side", "size", "collateral", "returns"} <= set(schema["properties"])
    assert operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/RiskAssessment")
    assert "422" in operation["responses"]


def test_cached_closes_are_read_only() -> None:
    """Requests share the cached closes; none can change them in place."""
    closes = history_from_feed(ReplayFeed(), "SOL").closes
    with pytest.raises(ValueError):
        closes.to_numpy()[0] = 1.0


# Invalid requests --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("body", "field", "words"), [
    ({**POSITION, "size": -1}, "size", "greater than 0"),
    ({**POSITION, "size": 0}, "size", "greater than 0"),
    ({**POSITION, "collateral": 0}, "collateral", "greater than 0"),
    ('{"market": "SOL", "side": "long", "size": NaN, "collateral": 100}', "size", "finite"),
    ('{"market": "SOL", "side": "long", "size": 1, "collateral": Infinity}', "collateral", "finite"),
    ('{"market": "SOL", "side": "long", "size": 1, "collateral": 100, "entry_price": -Infinity}', "entry_price", ""),
    ('{"market": "SOL", "side": "long", "size": 1, "collateral": 100, "returns": [0.01, NaN]}', "returns.1", "finite"),
    ({**POSITION, "size": "nan"}, "size", "valid number"),  # a string is not a number, whatever it spells
    ({**POSITION, "leverage": 0}, "leverage", "greater than 0"),
    ({**POSITION, "leverage": 101}, "leverage", "less than or equal to 100"),
    ({**POSITION, "leverage": -3}, "leverage", "greater than 0"),
    ({**POSITION, "maintenance_margin_ratio": 1.5}, "maintenance_margin_ratio", "less than 1"),
    ({**POSITION, "side": "sideways"}, "side", "long"),
    ({"market": "SOL", "side": "long", "size": 1}, "collateral", "required"),
    ({**POSITION, "colateral": 5}, "colateral", "not permitted"),
    ({**POSITION, "returns": [0.01]}, "returns", "at least 2"),
    ('{"market": "SOL", "side": ', "body", "invalid JSON"),
    ("[1, 2]", "body", "object"),
])
def test_invalid_input_is_422_naming_field_and_reason(client, body, field, words) -> None:
    resp = post(client, body)
    assert resp.status_code == 422, resp.text
    detail = resp.json()["detail"]
    assert [d["field"] for d in detail] == [field], detail
    assert words.lower() in detail[0]["reason"].lower() and detail[0]["reason"]


def test_nan_is_never_echoed_back(client) -> None:
    """FastAPI's default handler echoes the input, and NaN cannot be written as JSON; ours must answer 422, not 500."""
    resp = post(client, '{"market": "SOL", "side": "long", "size": NaN, "collateral": NaN}')
    assert resp.status_code == 422
    assert {d["field"] for d in resp.json()["detail"]} == {"size", "collateral"}
    assert "NaN" not in resp.text


@pytest.mark.parametrize("returns", [[1e308, 1e308, -0.5], [1e200, 1e200], [100] * 158, [1e200, -0.5]])
def test_returns_no_market_can_make_are_422_on_returns(client, returns) -> None:
    """Returns beyond +1,000% a day overflowed to a 500, or to a 200 with null figures; they are refused, each one."""
    resp = post(client, {**POSITION, "returns": returns})
    assert resp.status_code == 422, resp.text
    detail = resp.json()["detail"]
    too_big = [f"returns.{i}" for i, r in enumerate(returns) if r > 10]
    assert [d["field"] for d in detail] == too_big
    assert all(d["reason"] == "Input should be less than or equal to 10" for d in detail)


def test_returns_of_minus_100_percent_name_the_field(client) -> None:
    resp = post(client, {**POSITION, "returns": [-1, -1, 0.1]})
    assert resp.status_code == 422, resp.text
    assert resp.json()["detail"] == [
        {"field": f"returns.{i}", "reason": "Input should be greater than -1", "type": "greater_than"} for i in (0, 1)]


def test_returns_compounding_beyond_float_range_are_422_on_returns(client) -> None:
    """Each day within bounds, but a year of +1,000% days compounds past the largest float: refused by the engine."""
    resp = post(client, {**POSITION, "returns": [10] * 365})
    assert resp.status_code == 422, resp.text
    [issue] = resp.json()["detail"]
    assert issue["field"] == "returns" and "beyond floating-point range" in issue["reason"]


def test_answers_to_extreme_returns_hold_only_numbers(client) -> None:
    """At the bounds the figures are still finite: no ``null`` where the schema promises a number."""
    resp = post(client, {**POSITION, "returns": [10, -0.999999, 10, -0.999999]})
    assert resp.status_code == 200, resp.text
    result = RiskAssessment.model_validate_json(resp.content)  # refuses NaN and infinity
    assert result.var_99 == pytest.approx(0.999999) and 0.999999 < result.max_drawdown < 1


@pytest.mark.parametrize(("field", "value"), [
    ("size", True), ("size", "10"), ("collateral", "100"), ("collateral", False), ("entry_price", "20"),
    ("leverage", True), ("maintenance_margin_ratio", "0.01"), ("returns", ["0.01", 0.02]),
])
def test_numbers_are_strict(client, field, value) -> None:
    """``true`` and ``"10"`` are not numbers: a number field takes a JSON number only."""
    resp = post(client, {**POSITION, field: value})
    assert resp.status_code == 422, resp.text
    [issue] = resp.json()["detail"]
    assert issue["field"] in (field, f"{field}.0") and issue["reason"] == "Input should be a valid number"


def test_json_integers_are_numbers(client) -> None:
    as_ints = post(client, {**POSITION, "entry_price": 20, "returns": [0, 1, -0]})
    as_floats = post(client, {**POSITION, "size": 10.0, "collateral": 100.0, "entry_price": 20.0,
                              "returns": [0.0, 1.0, 0.0]})
    assert as_ints.status_code == 200, as_ints.text
    assert as_ints.json() == as_floats.json()


@pytest.mark.parametrize("url", [URL, "/v1/chat", "/v1/chat/stream"])
def test_a_body_that_is_not_utf8_is_422_in_the_error_shape(client, url) -> None:
    resp = client.post(url, content=b'{"market": "SOL\xff", "message": "hi\xff"}',
                       headers={"content-type": "application/json"})
    assert resp.status_code == 422, resp.text
    body = resp.json()
    assert body["error"] == "ValidationError"
    [issue] = body["detail"]
    assert issue["field"] == "body" and issue["type"] == "json_invalid"
    assert issue["reason"].startswith("invalid JSON: ")


def test_http_errors_keep_the_error_shape(client) -> None:
    resp = client.get(URL)
    assert resp.status_code == 405 and resp.headers["allow"] == "POST"
    assert resp.json() == {"error": "HTTPException",
                           "detail": [{"field": None, "reason": "Method Not Allowed", "type": "http_405"}]}
    assert client.get("/v1/nothing").json()["detail"][0]["type"] == "http_404"


@pytest.mark.parametrize(("body", "field", "words"), [
    ({**POSITION, "leverage": 5}, "leverage", "disagrees with notional / collateral"),
    ({**POSITION, "size": 1000, "collateral": 200}, "leverage", "above the 100x maximum"),
    ({**POSITION, "maintenance_amount": 1}, "maintenance_amount", "needs maintenance_margin_ratio"),
    ({**POSITION, "size": 100, "collateral": 100, "maintenance_margin_ratio": 0.5}, "collateral",
     "liquidated as it opens"),
])
def test_engine_refusals_are_422_naming_the_field(client, body, field, words) -> None:
    resp = post(client, body)
    assert resp.status_code == 422, resp.text
    assert resp.json()["error"] == "InvalidInput"
    [issue] = resp.json()["detail"]
    assert issue["field"] == field and words in issue["reason"]


@pytest.mark.parametrize("market", ["DOGE", "", "SOLANA-BTC"])
def test_unknown_market_is_422_on_the_market_field(client, market) -> None:
    resp = post(client, {**POSITION, "market": market})
    assert resp.status_code == 422, resp.text
    body = resp.json()
    assert body["error"] == "UnknownSymbol"
    assert body["detail"][0]["field"] == "market"
    assert "supported markets: BTC, ETH, SOL" in body["detail"][0]["reason"]


# Error mapping -----------------------------------------------------------------------------------------------------

class BrokenFeed:
    """A feed whose source is down: every call fails as a real outage would."""

    name = "broken"

    def __init__(self, error: MikeyError) -> None:
        self.error = error

    def symbols(self) -> list[str]:
        return ["SOL"]

    def quote(self, symbol: str) -> Quote:
        raise self.error

    def candles(self, symbol: str, *, start: datetime | None = None, end: datetime | None = None) -> list[Candle]:
        raise self.error


@pytest.mark.parametrize(("error", "status"), [
    (FeedError("hermes returned HTTP 500"), 503),
    (StalePrice("SOL price is 300 s old"), 503),
    (DataUnavailable("no SOL data on or before 2019-01-01"), 404),
])
def test_data_errors_map_to_http_codes(app, error, status) -> None:
    app.dependency_overrides[get_risk_service] = lambda: RiskService(HistoryCache(BrokenFeed(error)))
    with TestClient(app) as client:
        resp = post(client, POSITION)
    assert resp.status_code == status
    assert resp.json() == {"error": type(error).__name__,
                           "detail": [{"field": None, "reason": str(error), "type": type(error).__name__}]}


def test_every_error_class_has_a_status() -> None:
    assert status_for(UnknownSymbol("DOGE", ["SOL"])) == 422
    assert status_for(InvalidInput("bad")) == 422
    assert status_for(RateLimited("429")) == status_for(ProviderUnavailable("down")) == 502
    assert status_for(ConfigError("bad setting")) == 500
    import mikey.errors as errors

    tree = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, MikeyError)]
    assert all(any(k in STATUS for k in c.__mro__) for c in tree)
    assert 200 not in STATUS.values()


def test_history_cache_loads_each_market_once() -> None:
    calls: list[str] = []

    class CountingFeed(ReplayFeed):
        def candles(self, symbol: str, **kwargs) -> list[Candle]:  # noqa: ANN003
            calls.append(symbol)
            return super().candles(symbol, **kwargs)

    cache = HistoryCache(CountingFeed())
    cache.preload()
    loaded = len(calls)
    assert set(calls) == {"BTC", "ETH", "SOL"}
    for _ in range(3):
        assert cache.get("SOL") is cache.load("SOL")
    assert len(calls) == loaded


def test_live_history_is_reloaded_after_max_age() -> None:
    now = [0.0]
    cache = HistoryCache(ReplayFeed(), max_age=60, clock=lambda: now[0])
    first = cache.load("SOL")
    now[0] = 59
    assert cache.get("SOL") is first
    now[0] = 61
    assert cache.get("SOL") is None
    assert cache.load("SOL") is not first
