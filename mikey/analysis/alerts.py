"""Alerts of the market summary feed: threshold crossings in an ``Insight``'s code-computed values.

The risk engine's own alerts come first; then RSI(14) at or past its overbought / oversold line, and a signal action
that changed since the market's previous insight (a BUY-SELL reversal is a warning, any other change information).
"""

from __future__ import annotations

from mikey.analysis.signals import DEFAULT_THRESHOLD, RSI_OVERBOUGHT, RSI_OVERSOLD
from mikey.domain import Insight, RiskAlert


def code_alerts(insight: Insight, previous: Insight | None = None) -> list[RiskAlert]:
    """The risk engine's alerts, RSI at or past 70 / 30, and a signal action that changed since ``previous``."""
    facts = insight.facts
    out = list(facts.risk.alerts) if facts.risk is not None else []
    if facts.indicators is not None:
        rsi = facts.indicators.rsi_14
        shown = next(f.display for f in facts.numbers() if f.name == "rsi_14")
        if rsi >= RSI_OVERBOUGHT:
            out.append(RiskAlert(kind="rsi_overbought", severity="info", value=rsi, threshold=RSI_OVERBOUGHT,
                                 message=f"RSI(14) is {shown}, at or above 70 (overbought)."))
        elif rsi <= RSI_OVERSOLD:
            out.append(RiskAlert(kind="rsi_oversold", severity="info", value=rsi, threshold=RSI_OVERSOLD,
                                 message=f"RSI(14) is {shown}, at or below 30 (oversold)."))
    if previous is not None and previous.signal.action != insight.signal.action:
        was, now = previous.signal.action, insight.signal.action
        reversal = {was, now} == {"BUY", "SELL"}
        out.append(RiskAlert(kind="signal_flip", severity="warning" if reversal else "info",
                             value=insight.signal.strength, threshold=DEFAULT_THRESHOLD,
                             message=f"The signal changed from {was} ({previous.as_of:%Y-%m-%d}) to {now}."))
    return out
