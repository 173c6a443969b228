"""The alerts of the market summary feed: the risk engine's, RSI extremes, and signal flips."""

from __future__ import annotations

import pytest

from mikey.analysis.alerts import code_alerts
from mikey.domain import Insight, RiskAlert


def with_rsi(insight: Insight, rsi: float) -> Insight:
    indicators = insight.facts.indicators.model_copy(update={"rsi_14": rsi})
    return insight.model_copy(update={"facts": insight.facts.model_copy(update={"indicators": indicators})})


def with_action(insight: Insight, action: str) -> Insight:
    return insight.model_copy(update={"signal": insight.signal.model_copy(update={"action": action})})


def test_the_risk_engines_alerts_come_first(replay_insight) -> None:
    insight = replay_insight("SOL")
    engine = RiskAlert(kind="liquidation_near", severity="critical", message="close", value=5.0, threshold=10.0)
    risk = insight.facts.risk.model_copy(update={"alerts": [engine]})
    high = with_rsi(insight.model_copy(update={"facts": insight.facts.model_copy(update={"risk": risk})}), 80.0)
    assert [a.kind for a in code_alerts(high)] == ["liquidation_near", "rsi_overbought"]


@pytest.mark.parametrize(("rsi", "kinds"), [(70.0, ["rsi_overbought"]), (69.99, []), (30.0, ["rsi_oversold"]),
                                            (30.01, [])])
def test_rsi_alerts_at_or_past_the_lines(replay_insight, rsi, kinds) -> None:
    found = [a for a in code_alerts(with_rsi(replay_insight("SOL"), rsi)) if a.kind.startswith("rsi")]
    assert [a.kind for a in found] == kinds
    assert all(a.message.startswith(f"RSI(14) is {rsi:.2f}, at or ") for a in found)


@pytest.mark.parametrize(("was", "now", "severity"), [("BUY", "SELL", "warning"), ("SELL", "BUY", "warning"),
                                                      ("HOLD", "BUY", "info"), ("SELL", "HOLD", "info")])
def test_a_changed_signal_is_a_flip_and_a_reversal_a_warning(replay_insight, was, now, severity) -> None:
    insight = replay_insight("ETH")
    [flip] = [a for a in code_alerts(with_action(insight, now), with_action(insight, was)) if a.kind == "signal_flip"]
    assert flip.severity == severity
    assert flip.message == f"The signal changed from {was} ({insight.as_of:%Y-%m-%d}) to {now}."
    assert [a for a in code_alerts(insight) if a.kind == "signal_flip"] == []
