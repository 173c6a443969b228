"""Considerations for the market summary feed: rules over an ``Insight``'s code-computed values, never a model's.

Every number a sentence states is a fact's display string (``Facts.numbers``, the strings grounding accepts) or a
rule constant, so neither a model nor a headline can change what is recommended. They are considerations, never
instructions: no sentence tells anyone to buy or sell.
"""

from __future__ import annotations

from collections.abc import Sequence

from mikey.analysis.signals import RSI_OVERBOUGHT, RSI_OVERSOLD
from mikey.domain import Fact, Insight, Signal
from mikey.risk.sizing import LOSS_BUDGET, guided_leverage

LEVEL_PROXIMITY_PCT = 3.0
"""A support or resistance level within this distance of the price (in %) gets a recommendation."""


def recommend(insight: Insight) -> list[str]:
    """Considerations from code-computed values only; every number is a fact's display string or a rule constant."""
    facts, risk, signal = insight.facts, insight.facts.risk, insight.signal
    shown = _displays(facts.numbers())
    out = [_signal_sentence(signal, shown["signal_strength"])]
    if risk is not None:
        out.append(f"Market risk of a 1x long reference position scores {shown['risk_score']} ({risk.risk_level}); "
                   + _LEVEL_ADVICE[risk.risk_level])
        out.append(_leverage_sentence(risk.var_95, shown["var_95_pct"]))
    # The regime compares 30-day realised volatility with its own history; the risk engine's yearly figure is
    # another window, so the sentence states no number rather than pair the two.
    regime = next((p.name for p in insight.patterns if p.kind == "volatility"), None)
    if regime == "high volatility":
        out.append("Realised 30-day volatility is high against its own history, so smaller size or wider stops are "
                   "worth considering.")
    elif regime == "low volatility":
        out.append("Realised 30-day volatility is low against its own history; quiet markets often precede larger "
                   "moves.")
    if facts.indicators is not None:
        rsi = facts.indicators.rsi_14
        if rsi >= RSI_OVERBOUGHT:
            out.append(f"RSI(14) at {shown['rsi_14']} is overbought (70 or above): pullbacks are likelier, so "
                       "adding to longs deserves caution.")
        elif rsi <= RSI_OVERSOLD:
            out.append(f"RSI(14) at {shown['rsi_14']} is oversold (30 or below): rebounds are likelier, though "
                       "downtrends can stay oversold.")
    if facts.quote is not None:
        out += _level_sentences(float(facts.quote.price), shown["price"], facts.numbers())
    if insight.sentiment.items:
        out.append(f"News sentiment is {insight.sentiment.label} ({shown['sentiment_score']} over "
                   f"{insight.sentiment.items} items); headlines are others' words and can turn quickly.")
    return out


_LEVEL_ADVICE = {
    "LOW": "the market's own volatility and drawdowns are modest.",
    "MEDIUM": "sizing below your usual maximum is worth considering.",
    "HIGH": "smaller positions and lower leverage than usual are worth considering.",
    "CRITICAL": "smaller positions and lower leverage than usual are worth considering.",
}


def _displays(numbers: Sequence[Fact]) -> dict[str, str]:
    return {f.name: f.display for f in numbers}


def _signal_sentence(signal: Signal, strength: str) -> str:
    moved = [f for f in signal.factors if f.contribution != 0]
    top = max(moved, key=lambda f: abs(f.contribution)).name if moved else None
    led = f" (strongest factor: {top})" if top else ""
    if signal.action == "BUY":
        return (f"The code signal is BUY at strength {strength}{led}: a consideration for long exposure, to weigh "
                "against the risk figures, not an instruction.")
    if signal.action == "SELL":
        return (f"The code signal is SELL at strength {strength}{led}: a consideration for reducing long exposure, "
                "not an instruction.")
    return (f"The code signal is HOLD at strength {strength}{led}: the factors do not agree enough for a direction, "
            "so waiting for a clearer reading is worth considering.")


def _leverage_sentence(var_95: float, shown: str) -> str:
    budget = f"{LOSS_BUDGET:.0%}"
    most = guided_leverage(var_95)
    if most is None:
        return f"Daily VaR(95) of {shown} shows no loss in the history's worst days, so it gives no leverage bound."
    if most < 1:
        return (f"Daily VaR(95) of {shown} means even 1x leverage risks a 1-day 95% loss above {budget} of "
                "collateral.")
    return (f"Daily VaR(95) of {shown} suggests leverage of at most {most}x keeps a 1-day 95% loss under "
            f"{budget} of collateral.")


def _level_sentences(price: float, price_shown: str, numbers: Sequence[Fact]) -> list[str]:
    """Nearest support below and resistance above the price, when within ``LEVEL_PROXIMITY_PCT``."""
    below = [f for f in numbers if f.name.startswith("support_") and f.value <= price]
    above = [f for f in numbers if f.name.startswith("resistance_") and f.value >= price]
    out = []
    near = f"{LEVEL_PROXIMITY_PCT:g}%"
    if below:
        level = max(below, key=lambda f: f.value)
        if (price - level.value) / price * 100 <= LEVEL_PROXIMITY_PCT:
            out.append(f"The price {price_shown} is within {near} of support at {level.display}: a close below it "
                       "would weaken the level.")
    if above:
        level = min(above, key=lambda f: f.value)
        if (level.value - price) / price * 100 <= LEVEL_PROXIMITY_PCT:
            out.append(f"The price {price_shown} is within {near} of resistance at {level.display}: rejections "
                       "there are common, a close above it would clear it.")
    return out
