"""The numbers a turn may state: each ``Fact`` with its name, value, display string and facts-card label.

One row per number, defined once, because every consumer reads the same rows: grounding accepts a number in an
answer only if it matches one of these values, the writers (the offline writer, and models through the facts block)
copy the display strings, memory dates a turn by the first row, and the facts card prints label, display, source and
as-of. The labels are presentation, but they stay beside the display strings they label: the card is drawn by the
CLI, above the router and memory that read the same rows, so moving only the labels up there would split each row
across two layers, and the dynamic ones (``Signal BUY strength``, ``Support 1``, ``ETH Price (USD)``) are made from
the facts themselves.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from mikey.domain.risk import RiskAssessment

if TYPE_CHECKING:
    from mikey.domain.facts import Facts


class Fact(BaseModel):
    """One number MIKEY may state, with the text it is shown as and where it came from."""

    model_config = ConfigDict(frozen=True)

    name: str
    label: str
    value: float
    display: str
    source: str
    as_of: datetime


INDICATOR_FIELDS = (
    ("rsi_14", "RSI(14)", 2),
    ("macd", "MACD(12,26,9)", 4),
    ("macd_signal", "MACD signal", 4),
    ("macd_hist", "MACD histogram", 4),
    ("bb_upper", "Bollinger upper(20,2)", 4),
    ("bb_middle", "Bollinger middle", 4),
    ("bb_lower", "Bollinger lower", 4),
    ("atr_14", "ATR(14)", 4),
)
"""Indicator snapshot fields as stated: name, card label, decimal places."""


def stated_numbers(facts: Facts) -> list[Fact]:
    """``facts`` as labelled numbers, in the order a facts card shows them (``Facts.numbers``)."""
    out: list[Fact] = []
    if facts.quote is not None:
        q = facts.quote
        out.append(Fact(name="price", label="Price (USD)", value=float(q.price), display=f"{q.price}",
                        source=q.source, as_of=q.as_of))
        if q.change_pct is not None:
            out.append(Fact(name="change_1d_pct", label="Change 1d", value=q.change_pct,
                            display=f"{q.change_pct:+.2f}%", source=q.source, as_of=q.as_of))
    if facts.indicators is not None:
        ind = facts.indicators
        source = f"indicators({ind.bars} daily bars)"
        for name, label, digits in INDICATOR_FIELDS:
            value = getattr(ind, name)
            out.append(Fact(name=name, label=label, value=value, display=f"{value:.{digits}f}",
                            source=source, as_of=ind.as_of))
    if facts.signal is not None:
        s = facts.signal
        out.append(Fact(name="signal_strength", label=f"Signal {s.action} strength", value=s.strength,
                        display=f"{s.strength:.2f}", source="signals", as_of=s.as_of))
    if facts.sentiment is not None and facts.sentiment.items:
        m = facts.sentiment
        out.append(Fact(name="sentiment_score", label=f"Sentiment ({m.items} items)", value=m.score,
                        display=f"{m.score:+.2f}", source=m.method, as_of=m.as_of or _as_of(out)))
    price = float(facts.quote.price) if facts.quote is not None else None
    for kind in ("support", "resistance"):
        levels = [p for p in facts.patterns if p.kind == kind and p.level is not None]
        if price is not None:  # nearest first: support_1 is the closest support
            levels.sort(key=lambda p: abs(price - p.level))
        for i, p in enumerate(levels, 1):
            out.append(Fact(name=f"{kind}_{i}", label=f"{kind.capitalize()} {i}", value=p.level,
                            display=f"{p.level:.4f}", source=f"patterns({p.bars} bars)", as_of=p.end))
    if facts.risk is not None:
        out += _risk_numbers(facts.risk)
    for other in facts.compared:
        out += [f.model_copy(update={"name": f"{other.symbol.lower()}_{f.name}",
                                     "label": f"{other.symbol} {f.label}"}) for f in stated_numbers(other)]
    return out


def _as_of(facts: list[Fact]) -> datetime:
    return facts[0].as_of if facts else datetime.now(UTC)


def _risk_numbers(r: RiskAssessment) -> list[Fact]:
    source = f"risk engine({r.history_bars} daily bars)"
    rows: list[tuple[str, str, float | None, str]] = [
        ("position_size", f"Size ({r.market})", r.size, f"{r.size:.4f}"),
        ("position_notional", "Notional (USD)", r.notional, f"{r.notional:.2f}"),
        ("position_collateral", "Collateral (USD)", r.collateral, f"{r.collateral:.2f}"),
        ("position_leverage", "Leverage", r.leverage, f"{r.leverage:.2f}x"),
        ("entry_price", "Entry price (USD)", r.entry_price, f"{r.entry_price}"),
        ("liquidation_price", "Liquidation price (USD)", r.liquidation_price,
         "" if r.liquidation_price is None else f"{r.liquidation_price:.4f}"),
        ("distance_to_liquidation_pct", "Distance to liquidation", r.distance_to_liquidation_pct,
         "" if r.distance_to_liquidation_pct is None else f"{r.distance_to_liquidation_pct:.2f}%"),
        ("var_95_pct", "1-day VaR(95) % of notional", 100 * r.var_95, f"{100 * r.var_95:.2f}%"),
        ("var_99_pct", "1-day VaR(99) % of notional", 100 * r.var_99, f"{100 * r.var_99:.2f}%"),
        ("volatility_pct", "Annualised volatility", 100 * r.volatility_annualized,
         f"{100 * r.volatility_annualized:.1f}%"),
        ("risk_score", f"Risk score ({r.risk_level})", r.risk_score, f"{r.risk_score:.0f}"),
        ("recommended_max_size", "Recommended max size", r.recommended_max_size, f"{r.recommended_max_size:.4f}"),
    ]
    return [Fact(name=name, label=label, value=value, display=display, source=source, as_of=r.as_of)
            for name, label, value, display in rows if value is not None]
