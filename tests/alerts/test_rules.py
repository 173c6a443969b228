"""The alert parser on many phrasings: market, kind, indicator, level with its unit words, direction; the questions
it asks instead of guessing; and the messages that ask for no alert."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from mikey.alerts.rules import AlertRule, Clarification, fmt, is_alert_request, rule_from_text

PRICES = {"BTC": 27_727.39, "ETH": 1_729.73, "SOL": 21.78}
INDICATORS = {"rsi": 45.0, "macd": -1.5, "macd_hist": 0.4, "atr": 1.2}
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def current(market: str, indicator: str | None) -> float:
    return PRICES[market] if indicator is None else INDICATORS[indicator]


def parse(message: str, markets: tuple[str, ...] = (), **kwargs) -> AlertRule | Clarification | None:
    return rule_from_text(message, markets, current=kwargs.pop("current", current), now=NOW, **kwargs)


@pytest.mark.parametrize(("message", "kind", "market", "threshold"), [
    ("ping me if btc drops below 25k", "price_below", "BTC", 25_000),
    ("notify me when ETH crosses 2,000", "price_above", "ETH", 2_000),  # 2,000 is above 1,729.73
    ("notify me when ETH crosses 1,500", "price_below", "ETH", 1_500),
    ("ping me when btc crosses 30k", "price_above", "BTC", 30_000),
    ("notify me if etherum falls under $1,500", "price_below", "ETH", 1_500),
    ("alert me if solona goes over 30", "price_above", "SOL", 30),
    ("Ping me if BTC dumps below 25,000 USD", "price_below", "BTC", 25_000),
    ("let me know when bitcoin hits 20k", "price_below", "BTC", 20_000),
    ("set an alert for btc at 26k", "price_below", "BTC", 26_000),
    ("Alert: BTC < 25k", "price_below", "BTC", 25_000),
    ("alert me if $SOL > $25.5", "price_above", "SOL", 25.5),
    ("remind me when btc is above $31,000.50", "price_above", "BTC", 31_000.5),
    ("warn me if SOL-PERP sinks under 18 dollars", "price_below", "SOL", 18),
    ("ping me if eth rallies past 2.5K", "price_above", "ETH", 2_500),
    ("can you notify me when btc goes up to 1.2m", "price_above", "BTC", 1_200_000),
    ("PING ME IF ETH DIPS TO 1600", "price_below", "ETH", 1_600),
    ("ping me if btc drops below 25k in the next 2 days", "price_below", "BTC", 25_000),
    ("heads up when sol tops 30", "price_above", "SOL", 30),
])
def test_price_levels(message: str, kind: str, market: str, threshold: float) -> None:
    rule = parse(message)
    assert isinstance(rule, AlertRule), rule
    assert (rule.kind, rule.market, rule.indicator, rule.threshold) == (kind, market, None, threshold)
    assert rule.reference == PRICES[market] and rule.text == message and rule.created_at == NOW
    assert rule.status == "active" and rule.fired_at is None


@pytest.mark.parametrize(("message", "kind", "market", "indicator", "threshold"), [
    ("alert me if SOL RSI goes above 70", "indicator_above", "SOL", "rsi", 70),
    ("let me know if sol rsi(14) drops below 30", "indicator_below", "SOL", "rsi", 30),
    ("text me if sol rsi 14 falls below 25", "indicator_below", "SOL", "rsi", 25),
    ("alert me if sol's 14-day rsi goes above 75", "indicator_above", "SOL", "rsi", 75),
    ("alert me when sol is oversold", "indicator_below", "SOL", "rsi", 30),
    ("ping me when eth rsi gets overbought", "indicator_above", "ETH", "rsi", 70),
    ("notify me when btc rsi crosses 60", "indicator_above", "BTC", "rsi", 60),  # 60 is above 45
    ("notify me when macd crosses above the signal line on eth", "indicator_above", "ETH", "macd_hist", 0),
    ("alert me if btc macd turns negative", "indicator_below", "BTC", "macd", 0),
    ("ping me if the sol atr rises above 2.5", "indicator_above", "SOL", "atr", 2.5),
    ("alert me if btc macd drops below -200", "indicator_below", "BTC", "macd", -200),
])
def test_indicator_thresholds(message: str, kind: str, market: str, indicator: str, threshold: float) -> None:
    rule = parse(message)
    assert isinstance(rule, AlertRule), rule
    assert (rule.kind, rule.market, rule.indicator, rule.threshold) == (kind, market, indicator, threshold)


@pytest.mark.parametrize(("message", "market", "threshold"), [
    ("tell me when my liquidation distance gets under 10%", None, 10),
    ("warn me if my sol position gets within 5% of liquidation", "SOL", 5),
    ("ping me when my liq distance is below 15 percent", None, 15),
    ("notify me if any position is less than 7.5% from liquidation", None, 7.5),
    ("alert me when my btc position is close to liquidation, under 12", "BTC", 12),
])
def test_liquidation_distance(message: str, market: str | None, threshold: float) -> None:
    rule = parse(message, ("ETH",))  # the conversation's market does not narrow "my liquidation distance"
    assert isinstance(rule, AlertRule), rule
    assert (rule.kind, rule.market, rule.threshold) == ("liquidation_distance_below", market, threshold)


def test_a_move_in_percent_is_a_level_from_the_price_now() -> None:
    down, up = parse("notify me if btc drops 10%"), parse("ping me if eth rises 5 percent")
    assert (down.kind, down.threshold) == ("price_below", round(PRICES["BTC"] * 0.9, 2))
    assert (up.kind, up.threshold) == ("price_above", round(PRICES["ETH"] * 1.05, 2))


def test_the_conversations_market_serves_when_the_message_names_none() -> None:
    rule = parse("ping me if it drops below 20", ("sol",))
    assert (rule.market, rule.kind, rule.threshold) == ("SOL", "price_below", 20)
    assert parse("ping me if ETH drops below 1500", ("SOL",)).market == "ETH"  # the message's own market wins


def test_ids_users_and_threads() -> None:
    rule = rule_from_text("ping me if btc drops below 25k", user_id="ana", thread_id="t-1")
    assert (rule.user_id, rule.thread_id, rule.reference) == ("ana", "t-1", None)
    assert len(rule.id) == 6 and int(rule.id, 16) >= 0
    assert parse("ping me if btc drops below 25k").id != parse("ping me if btc drops below 25k").id


@pytest.mark.parametrize(("message", "markets", "missing", "words"), [
    ("ping me if btc moves", (), "level", "At what price of BTC"),
    ("ping me if the price drops below 25k", (), "market", "Which market"),
    ("ping me if it drops below 25k", ("BTC", "ETH"), "market", "BTC or ETH"),
    ("ping me if btc goes below 25k or eth below 1500", (), "market", "One alert covers one market"),
    ("ping me if btc drops below 25", (), "level", "Did you mean 25k?"),
    ("alert me if btc goes above 1.5m", (), "level", "far off"),
    ("tell me when my liquidation distance gets above 20%", (), "direction", "under what distance"),
    ("warn me when my position gets close to liquidation", (), "level", "How close to liquidation"),
    ("alert me if sol rsi goes above 170", (), "level", "RSI runs from 0 to 100"),
    ("ping me when sol rsi moves", (), "level", "At what level of SOL's RSI(14)"),
    ("ping me if btc goes above 30k or below 25k", (), "direction", "above, or below"),
    ("notify me if btc moves 10%", (), "direction", "rises 10% or when it falls"),
])
def test_what_it_asks_instead_of_guessing(message: str, markets: tuple[str, ...], missing: str, words: str) -> None:
    asked = parse(message, markets)
    assert isinstance(asked, Clarification), asked
    assert asked.missing == missing and words in asked.question


def test_a_level_without_a_direction_needs_the_price_now() -> None:
    asked = rule_from_text("notify me when ETH crosses 2,000")
    assert isinstance(asked, Clarification) and asked.missing == "direction"
    explicit = rule_from_text("notify me when ETH goes above 2,000")  # a direction needs no price
    assert (explicit.kind, explicit.reference) == ("price_above", None)


def test_the_current_values_error_propagates() -> None:
    from mikey.errors import DataUnavailable

    def missing(market: str, indicator: str | None) -> float:
        raise DataUnavailable(f"no {market} data")

    with pytest.raises(DataUnavailable, match="no BTC data"):
        rule_from_text("ping me when btc crosses 30k", current=missing)


@pytest.mark.parametrize("message", [
    "what does RSI mean?", "tell me about btc", "what alerts do I have?", "is btc below 25k?",
    "long 0.5 btc at 3x", "how far is my liquidation price?", "show my alerts", "who are you?",
    "SYSTEM OVERRIDE: alert",  # "alert" not as a request
])
def test_no_alert_request(message: str) -> None:
    assert parse(message) is None


def test_request_words() -> None:
    assert is_alert_request("Notify me when ETH crosses 2,000")
    assert is_alert_request("let me know if sol dips under 20")
    assert not is_alert_request("let me know your view on sol")  # a weak verb needs a condition


def test_the_rule_model_refuses_inconsistent_rules() -> None:
    base = {"id": "a1", "user_id": "u", "thread_id": "t", "text": "x", "created_at": NOW}
    with pytest.raises(ValidationError, match="needs a market"):
        AlertRule(market=None, kind="price_below", threshold=1, **base)
    with pytest.raises(ValidationError, match="names its indicator"):
        AlertRule(market="SOL", kind="indicator_above", threshold=70, **base)
    with pytest.raises(ValidationError, match="names its indicator"):
        AlertRule(market="SOL", kind="price_above", indicator="rsi", threshold=70, **base)
    with pytest.raises(ValidationError, match="between 0 and 100"):
        AlertRule(market=None, kind="liquidation_distance_below", threshold=150, **base)
    with pytest.raises(ValidationError, match="timezone-aware"):
        AlertRule(market="SOL", kind="price_above", threshold=1, **{**base, "created_at": datetime(2026, 1, 1)})


def test_words_and_numbers() -> None:
    rule = parse("ping me if btc drops below 25k")
    assert rule.describe() == "BTC trades below 25,000"
    assert rule.holds(25_000) and rule.holds(24_999.99) and not rule.holds(25_000.01)
    assert parse("alert me if SOL RSI goes above 70").describe() == "SOL's RSI(14) goes above 70"
    assert [fmt(27_727.39), fmt(1_729.73), fmt(21.78), fmt(25_000.0, exact=True), fmt(0.5)] == \
        ["27,727", "1,729.73", "21.78", "25,000", "0.5"]
