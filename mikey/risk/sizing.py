"""Position sizing: how big a position may be, from the risk a trader accepts. Sizes are in base units.

- Fixed fraction: risk ``risk_fraction`` of equity between entry and stop, ``size = equity x f / |entry - stop|``.
- Volatility target: the position's annualised volatility, as a fraction of equity, equals the target:
  ``notional = equity x target_vol / asset_vol``.
- Capped Kelly: full Kelly for a win rate p and payoff b (average win / average loss) is ``f* = p - (1 - p) / b``;
  full Kelly is far too aggressive when p and b are estimates, so the fraction used is ``KELLY_CAP x f*``
  (a quarter Kelly by default), and 0 when the edge is negative (no bet).
- ``recommended_max_size``: the smallest of the sizes the user's limits allow (max leverage, including the margin
  tier's own cap; max position notional; the 1-day VaR99 budget), with the limit that binds.
- ``guided_leverage``: the largest whole leverage whose 1-day 95% loss stays under ``LOSS_BUDGET`` of collateral,
  from the market's VaR(95) alone (the market summary feed's guidance, where no user limits are known).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from mikey.errors import InvalidInput
from mikey.risk.liquidation import MarginTier, Side

KELLY_CAP = 0.25
"""Fraction of full Kelly used by ``kelly_fraction`` unless told otherwise."""
LOSS_BUDGET = 0.10
"""Leverage guidance: the largest 1-day 95% loss, as a fraction of collateral, the suggested leverage keeps under."""
MAX_GUIDED_LEVERAGE = 100


def _positive(**values: float) -> None:
    for name, value in values.items():
        if not (math.isfinite(value) and value > 0):
            raise InvalidInput(f"{name} must be a positive number; got {value!r}")


def fixed_fraction_size(equity: float, risk_fraction: float, entry_price: float, stop_price: float,
                        side: Side | None = None) -> float:
    """Size that loses ``risk_fraction`` of ``equity`` if the stop is hit (fees and slippage aside).

    With ``side`` given, the stop must be on the losing side of the entry (below for a long, above for a short).
    """
    _positive(equity=equity, risk_fraction=risk_fraction, entry_price=entry_price, stop_price=stop_price)
    if risk_fraction > 1:
        raise InvalidInput(f"risk_fraction is a fraction of equity (0.01 = 1%); got {risk_fraction}")
    if stop_price == entry_price:
        raise InvalidInput("the stop must differ from the entry price")
    if side == "long" and stop_price > entry_price or side == "short" and stop_price < entry_price:
        raise InvalidInput(f"a {side}'s stop must be on its losing side of the entry {entry_price:g}")
    return equity * risk_fraction / abs(entry_price - stop_price)


def volatility_target_size(equity: float, target_volatility: float, asset_volatility: float, price: float) -> float:
    """Size whose annualised volatility is ``target_volatility`` of ``equity`` (both volatilities annualised)."""
    _positive(equity=equity, target_volatility=target_volatility, asset_volatility=asset_volatility, price=price)
    return equity * target_volatility / asset_volatility / price


def kelly_fraction(win_rate: float, payoff: float, *, cap: float = KELLY_CAP) -> float:
    """Fraction of equity to risk: ``cap x (p - (1 - p) / b)``, never below 0."""
    if not 0 <= win_rate <= 1:
        raise InvalidInput(f"win_rate must be in [0, 1]; got {win_rate}")
    _positive(payoff=payoff, cap=cap)
    if cap > 1:
        raise InvalidInput(f"cap is a fraction of full Kelly (0.25 = quarter Kelly); got {cap}")
    return max(0.0, cap * (win_rate - (1.0 - win_rate) / payoff))


def kelly_size(equity: float, win_rate: float, payoff: float, entry_price: float, stop_price: float,
               *, cap: float = KELLY_CAP, side: Side | None = None) -> float:
    """Fixed-fraction size risking the capped Kelly fraction between entry and stop (0 without an edge)."""
    fraction = kelly_fraction(win_rate, payoff, cap=cap)
    if fraction == 0:
        return 0.0
    return fixed_fraction_size(equity, fraction, entry_price, stop_price, side)


def max_notional_for_leverage(collateral: float, max_leverage: float, tiers: Sequence[MarginTier] = ()) -> float:
    """Largest notional with notional / collateral <= the leverage allowed: the user's maximum, and in each margin
    tier no more than that tier's own maximum leverage (tiers without one only apply the user's)."""
    if not tiers:
        return collateral * max_leverage
    best = 0.0
    for tier in tiers:
        allowed = max_leverage if tier.max_leverage is None else min(max_leverage, tier.max_leverage)
        top = collateral * allowed if tier.cap is None else min(tier.cap, collateral * allowed)
        if top >= tier.floor:
            best = max(best, top)
    return best


@dataclass(frozen=True)
class SizeRecommendation:
    """The recommended maximum size and what it rests on."""

    size: float
    """Base units: the smallest of ``limits``."""
    binding: str
    """Name of the limit that gives ``size``."""
    limits: dict[str, float]
    """Each applicable limit as a size in base units (limits that do not apply are left out)."""

    @property
    def reason(self) -> str:
        return {
            "max_leverage": "the leverage limit",
            "max_position_notional": "the position-size limit",
            "var_budget": "the daily VaR budget",
        }.get(self.binding, self.binding)


def recommended_max_size(*, collateral: float, price: float, max_leverage: float, max_position_notional: float,
                         var_99: float | None = None, var_budget_fraction: float | None = None,
                         tiers: Sequence[MarginTier] = ()) -> SizeRecommendation:
    """The largest size every limit allows, with the binding limit.

    Args:
        collateral: margin (USD) backing the position.
        price: price the size is valued at (USD).
        max_leverage: the user's maximum leverage; the margin tiers' own maximum applies too.
        max_position_notional: the user's maximum notional (USD).
        var_99: 1-day VaR99 of the position's side, as a fraction of notional. The VaR budget only applies when it
            is positive (a history without losses gives no bound).
        var_budget_fraction: the largest 1-day VaR99 loss allowed, as a fraction of ``collateral``.
        tiers: the market's margin tiers (their ``max_leverage`` caps leverage per notional bracket).
    """
    _positive(collateral=collateral, price=price, max_leverage=max_leverage,
              max_position_notional=max_position_notional)
    limits = {
        "max_leverage": max_notional_for_leverage(collateral, max_leverage, tiers) / price,
        "max_position_notional": max_position_notional / price,
    }
    if var_99 is not None and var_budget_fraction is not None and var_99 > 0:
        limits["var_budget"] = var_budget_fraction * collateral / (var_99 * price)
    binding = min(limits, key=limits.__getitem__)
    return SizeRecommendation(size=limits[binding], binding=binding, limits=limits)


def guided_leverage(var_95: float) -> int | None:
    """The largest whole leverage keeping a 1-day 95% loss under ``LOSS_BUDGET`` of collateral; None if VaR <= 0."""
    if var_95 <= 0:
        return None
    return min(MAX_GUIDED_LEVERAGE, math.floor(LOSS_BUDGET / var_95))
