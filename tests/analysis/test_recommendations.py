"""The recommendations of the market summary feed: rules over an insight's code-computed values."""

from __future__ import annotations

import pytest

from mikey.analysis.recommendations import LEVEL_PROXIMITY_PCT, recommend
from mikey.domain import Insight, PatternFinding


def changed(insight: Insight, **facts) -> Insight:
    return insight.model_copy(update={"facts": insight.facts.model_copy(update=facts)})


def test_every_sentence_rests_on_the_facts_shown(replay_insight) -> None:
    insight = replay_insight("BTC")
    shown = {f.name: f.display for f in insight.facts.numbers()}
    lines = recommend(insight)
    assert lines[0].startswith(f"The code signal is {insight.signal.action} at strength {shown['signal_strength']}")
    assert lines[1].startswith(f"Market risk of a 1x long reference position scores {shown['risk_score']} "
                               f"({insight.risk_level}); ")
    assert lines[2] == (f"Daily VaR(95) of {shown['var_95_pct']} suggests leverage of at most 3x keeps a 1-day 95% "
                        "loss under 10% of collateral.")


@pytest.mark.parametrize(("action", "start"), [
    ("BUY", "a consideration for long exposure"), ("SELL", "a consideration for reducing long exposure"),
    ("HOLD", "the factors do not agree enough for a direction")])
def test_the_signal_is_a_consideration_never_an_instruction(replay_insight, action, start) -> None:
    insight = replay_insight("SOL")
    signal = insight.signal.model_copy(update={"action": action})
    first = recommend(changed(insight, signal=signal).model_copy(update={"signal": signal}))[0]
    assert first.startswith(f"The code signal is {action} at strength ") and start in first


@pytest.mark.parametrize(("var_95", "sentence"), [
    (0.0, "shows no loss in the history's worst days, so it gives no leverage bound."),
    (0.2, "means even 1x leverage risks a 1-day 95% loss above 10% of collateral.")])
def test_leverage_guidance_without_a_bound_or_below_1x(replay_insight, var_95, sentence) -> None:
    insight = replay_insight("SOL")
    lines = recommend(changed(insight, risk=insight.facts.risk.model_copy(update={"var_95": var_95})))
    assert any(line.startswith("Daily VaR(95) of ") and line.endswith(sentence) for line in lines)


def test_a_level_near_the_price_is_named_with_its_display(replay_insight) -> None:
    insight = replay_insight("SOL")
    price = float(insight.facts.quote.price)
    near = price * (1 - LEVEL_PROXIMITY_PCT / 200)  # half the proximity below the price
    support = PatternFinding(kind="support", name="support", direction="bullish", strength=0.5, level=near,
                             start=insight.as_of, end=insight.as_of, bars=20)
    far = support.model_copy(update={"level": price * 0.5})
    lines = recommend(changed(insight, patterns=[support, far]))
    [line] = [line for line in lines if "of support at" in line]
    assert line == (f"The price {insight.facts.quote.price} is within 3% of support at {near:.4f}: a close below it "
                    "would weaken the level.")


def test_rsi_at_the_lines_is_overbought_or_oversold(replay_insight) -> None:
    insight = replay_insight("SOL")
    at = {rsi: recommend(changed(insight, indicators=insight.facts.indicators.model_copy(update={"rsi_14": rsi})))
          for rsi in (70.0, 30.0, 50.0)}
    assert any(line.startswith("RSI(14) at 70.00 is overbought (70 or above)") for line in at[70.0])
    assert any(line.startswith("RSI(14) at 30.00 is oversold (30 or below)") for line in at[30.0])
    assert not any(line.startswith("RSI(14)") for line in at[50.0])
