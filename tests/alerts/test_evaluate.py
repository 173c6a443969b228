"""Evaluation on the replayed history: a rule fires when the replayed value crosses its level between two as-of
dates, on prices, indicators and the distance to liquidation of paper positions."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from mikey.alerts.evaluate import distance_pct, evaluate
from mikey.alerts.rules import AlertRule
from mikey.analysis.indicators import snapshot
from mikey.execution.broker import OrderRequest
from mikey.execution.paper import PaperBroker
from mikey.market.replay import ReplayFeed
from mikey.risk import liquidation as liq

CREATED = datetime(2026, 1, 1, tzinfo=UTC)


def rule(rule_id: str, kind: str, threshold: float, market: str | None = "BTC", **kwargs) -> AlertRule:
    return AlertRule(id=rule_id, user_id="local", thread_id="t", market=market, kind=kind, threshold=threshold,
                     text="words", created_at=CREATED, **kwargs)


def test_btc_below_25k_fires_when_the_replayed_price_crosses() -> None:
    """BTC closed at 26,762.65 on 2022-06-12 and 22,487.39 on 2022-06-13."""
    below, above = rule("b", "price_below", 25_000), rule("a", "price_above", 26_000)
    before = evaluate([below, above], ReplayFeed(as_of=date(2022, 6, 12)))
    assert [f.rule.id for f in before.fired] == ["a"] and not before.errors
    after = evaluate([below, above], ReplayFeed(as_of=date(2022, 6, 13)))
    assert [f.rule.id for f in after.fired] == ["b"]
    firing = after.fired[0]
    assert firing.value == pytest.approx(22_487.388672) and firing.as_of == datetime(2022, 6, 13, tzinfo=UTC)
    assert firing.detail == "BTC at 22,487 on 2022-06-13 00:00 UTC"


def test_only_active_rules_are_evaluated() -> None:
    feed = ReplayFeed(as_of=date(2022, 6, 13))
    fired = rule("f", "price_below", 25_000).model_copy(update={"status": "fired", "fired_at": CREATED})
    deleted = rule("d", "price_below", 25_000).model_copy(update={"status": "deleted"})
    assert evaluate([fired, deleted], feed).fired == []


def test_an_indicator_rule_fires_when_the_indicator_crosses() -> None:
    day1, day2 = date(2022, 6, 12), date(2022, 6, 13)
    rsi1 = snapshot(ReplayFeed(as_of=day1).candles("BTC")).rsi_14
    rsi2 = snapshot(ReplayFeed(as_of=day2).candles("BTC")).rsi_14
    assert rsi2 < rsi1  # the 16% fall of 2022-06-13
    level = (rsi1 + rsi2) / 2
    watched = rule("r", "indicator_below", level, indicator="rsi")
    assert evaluate([watched], ReplayFeed(as_of=day1)).fired == []
    (firing,) = evaluate([watched], ReplayFeed(as_of=day2)).fired
    assert firing.value == pytest.approx(rsi2) and "RSI(14)" in firing.detail


def test_a_rule_without_data_is_an_error_and_the_others_go_on() -> None:
    feed = ReplayFeed(as_of=date(2020, 6, 1))  # before the bundled history starts
    result = evaluate([rule("p", "price_below", 25_000), rule("l", "liquidation_distance_below", 10, market=None)],
                      feed)
    assert result.fired == []
    assert "no BTC data on or before 2020-06-01" in result.errors["p"]
    assert result.errors["l"] == "no broker to read positions from"


def _open(broker: PaperBroker, client_id: str, market: str, price: float, leverage: float) -> None:
    collateral = 100.0
    broker.submit(OrderRequest(client_id=client_id, user_id="local", market=market, side="long",
                               size=collateral * leverage / price, leverage=leverage, collateral=collateral,
                               price_bound=price * 1.01), oracle_price=price)


def test_liquidation_distance_on_paper_positions(tmp_path: Path) -> None:
    broker = PaperBroker(tmp_path / "paper.sqlite", slippage=0.0, fee_rate=0.0, funding_rate_hourly=0.0)
    opened = ReplayFeed(as_of=date(2023, 8, 1))
    price = float(opened.quote("SOL").price)
    _open(broker, "p-2x", "SOL", price, 2)
    watched = [rule("any", "liquidation_distance_below", 10, market=None),
               rule("sol", "liquidation_distance_below", 10, market="SOL"),
               rule("eth", "liquidation_distance_below", 10, market="ETH")]
    assert evaluate(watched, opened, broker=broker).fired == []  # 2x: about 49% from liquidation

    _open(broker, "p-10x", "SOL", price, 10)
    result = evaluate(watched, opened, broker=broker)
    assert sorted(f.rule.id for f in result.fired) == ["any", "sol"]  # no ETH position
    position = next(p for p in broker.positions("local") if p.leverage == 10)
    expected = liq.distance_to_liquidation_pct("long", liq.isolated_liquidation_price(
        "long", position.size, position.entry_price, position.collateral, liq.DEFAULT_TIERS["SOL"]), price)
    assert result.fired[0].value == pytest.approx(expected) == pytest.approx(distance_pct(position, price))
    assert 8 < expected < 10 and position.id in result.fired[0].detail

    # a week later SOL is lower: the 2x position is still far, the 10x one closer still
    later = evaluate(watched, ReplayFeed(as_of=date(2023, 8, 17)), broker=broker)
    assert later.fired[0].value < expected
    broker.close()
