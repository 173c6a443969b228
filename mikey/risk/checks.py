"""Pre-trade checks: each limit of ``RiskLimits`` becomes one named ``RiskCheck`` with its value, limit and words.

Losses are measured in % of the collateral backing the position (for cross margin, the account balance given) and
capped at 100%: liquidation stops the loss there. The checks, in the order ``pre_trade_checks`` returns them:

====================================  ==============================================================================
``max_position_size``                 notional (USD) <= ``max_position_notional``
``max_leverage``                      notional / collateral <= ``max_leverage``, and <= the margin tier's own maximum
``max_daily_loss``                    a repeat of the worst day in the history (position's side) x leverage
                                      <= ``max_daily_loss_pct`` of collateral
``max_drawdown``                      the largest move against the position in the history (peak to trough for a
                                      long, trough to peak for a short) x leverage <= ``max_drawdown_pct``
``max_portfolio_var``                 1-day VaR99 x notional of the positions assessed together <=
                                      ``max_var_99_pct`` of collateral (``assess`` assesses one position, so it is
                                      that position's VaR; use ``market_risk.portfolio_var`` for several)
``min_distance_to_liquidation``       distance to liquidation >= ``min_distance_to_liquidation_pct`` of the price
====================================  ==============================================================================

A failed check is information, not an error: the assessment carries it, and nothing raises ``RiskLimitExceeded``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from mikey.domain import RiskCheck


class RiskLimits(BaseModel):
    """A trader's risk settings. The defaults are deliberately moderate for leveraged crypto perpetuals."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    max_position_notional: float = Field(250_000.0, gt=0, description="Largest position notional, USD.")
    max_leverage: float = Field(20.0, gt=0, le=125, description="Largest notional / collateral.")
    max_daily_loss_pct: float = Field(
        30.0, gt=0, le=100, description="Largest loss, % of collateral, that a repeat of the worst day may cause.")
    max_drawdown_pct: float = Field(
        60.0, gt=0, le=100, description="Largest loss, % of collateral, of the history's worst adverse move.")
    max_var_99_pct: float = Field(
        20.0, gt=0, le=100, description="Largest 1-day VaR99, % of collateral (also the sizing VaR budget).")
    min_distance_to_liquidation_pct: float = Field(
        10.0, ge=0, lt=100, description="Smallest distance to liquidation, % of the current price.")


LIMITS_BY_TOLERANCE: dict[str, RiskLimits] = {
    "low": RiskLimits(max_leverage=5.0, max_daily_loss_pct=15.0, max_drawdown_pct=40.0, max_var_99_pct=10.0,
                      min_distance_to_liquidation_pct=20.0),
    "medium": RiskLimits(),
    "high": RiskLimits(max_leverage=50.0, max_daily_loss_pct=50.0, max_drawdown_pct=80.0, max_var_99_pct=35.0,
                       min_distance_to_liquidation_pct=5.0),
}
"""Limits for a trader's stated risk tolerance (a remembered chat preference); "medium" is the default set."""


def loss_pct_of_collateral(move: float, leverage: float) -> float:
    """A price move against the position (fraction) as a loss in % of collateral, capped at 100 (liquidation)."""
    return min(100.0, move * leverage * 100.0)


def _usd(value: float) -> str:
    return f"${value:,.2f}"


def check_position_size(notional: float, limits: RiskLimits) -> RiskCheck:
    limit = limits.max_position_notional
    passed = notional <= limit
    detail = (f"Notional {_usd(notional)} is {'within' if passed else 'above'} the {_usd(limit)} position limit"
              + ("." if passed else f" by {_usd(notional - limit)}."))
    return RiskCheck(name="max_position_size", passed=passed, value=notional, limit=limit, detail=detail)


def check_leverage(leverage: float, limits: RiskLimits, tier_max_leverage: float | None = None) -> RiskCheck:
    """Against the user's maximum and, when known, the margin tier's maximum (whichever is lower)."""
    limit = limits.max_leverage
    source = "your limit"
    if tier_max_leverage is not None and tier_max_leverage < limit:
        limit, source = tier_max_leverage, "the margin tier's maximum for this notional"
    passed = leverage <= limit
    verb = "is within" if passed else "exceeds"
    return RiskCheck(name="max_leverage", passed=passed, value=leverage, limit=limit,
                     detail=f"Leverage {leverage:.2f}x {verb} {source} of {limit:g}x.")


def check_daily_loss(worst_day_move: float, leverage: float, limits: RiskLimits) -> RiskCheck:
    """``worst_day_move``: the worst 1-day return against the position in the history, as a positive fraction."""
    value = loss_pct_of_collateral(worst_day_move, leverage)
    limit = limits.max_daily_loss_pct
    passed = value <= limit
    wiped = " (the collateral would be wiped out)" if value >= 100 else ""
    return RiskCheck(name="max_daily_loss", passed=passed, value=value, limit=limit,
                     detail=f"A repeat of the worst day in the history ({worst_day_move:.2%} against the position) "
                            f"would cost {value:.1f}% of collateral{wiped}; the limit is {limit:g}%.")


def check_drawdown(adverse_move: float, leverage: float, limits: RiskLimits) -> RiskCheck:
    """``adverse_move``: the history's largest move against the position (``market_risk.max_adverse_move``)."""
    value = loss_pct_of_collateral(adverse_move, leverage)
    limit = limits.max_drawdown_pct
    passed = value <= limit
    wiped = ", i.e. liquidation" if value >= 100 else ""
    return RiskCheck(name="max_drawdown", passed=passed, value=value, limit=limit,
                     detail=f"Held through the history's worst move against it ({adverse_move:.2%}), the position "
                            f"would lose {value:.1f}% of collateral{wiped}; the limit is {limit:g}%.")


def check_portfolio_var(var_99: float, leverage: float, limits: RiskLimits) -> RiskCheck:
    """``var_99``: 1-day VaR99 as a fraction of notional (may be negative: no loss in the tail)."""
    value = loss_pct_of_collateral(var_99, leverage)
    limit = limits.max_var_99_pct
    passed = value <= limit
    return RiskCheck(name="max_portfolio_var", passed=passed, value=value, limit=limit,
                     detail=f"1-day VaR99 is {var_99:.2%} of notional, {value:.1f}% of collateral at "
                            f"{leverage:.2f}x; the limit is {limit:g}%.")


def check_liquidation_distance(distance_pct: float | None, limits: RiskLimits) -> RiskCheck:
    limit = limits.min_distance_to_liquidation_pct
    if distance_pct is None:
        return RiskCheck(name="min_distance_to_liquidation", passed=True, value=None, limit=limit,
                         detail="The position cannot be liquidated: its collateral covers a fall of the price to zero.")
    passed = distance_pct >= limit
    if distance_pct <= 0:
        detail = "The price is already beyond the liquidation price."
    else:
        detail = (f"Liquidation is {distance_pct:.2f}% away from the current price; "
                  f"the minimum is {limit:g}%.")
    return RiskCheck(name="min_distance_to_liquidation", passed=passed, value=distance_pct, limit=limit, detail=detail)


def pre_trade_checks(*, notional: float, leverage: float, worst_day_move: float, adverse_move: float, var_99: float,
                     distance_pct: float | None, limits: RiskLimits,
                     tier_max_leverage: float | None = None) -> list[RiskCheck]:
    """Every check, in the order of the module docstring's table."""
    return [
        check_position_size(notional, limits),
        check_leverage(leverage, limits, tier_max_leverage),
        check_daily_loss(worst_day_move, leverage, limits),
        check_drawdown(adverse_move, leverage, limits),
        check_portfolio_var(var_99, leverage, limits),
        check_liquidation_distance(distance_pct, limits),
    ]
