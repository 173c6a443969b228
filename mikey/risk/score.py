"""The risk score: 0-100 as a sum of bounded factor points, so every point can be traced to a factor and explained.

Each factor's points rise monotonically with its risk and are capped, and the caps sum to 100:

=====================  ======  ==================================================================================
factor                 max     points
=====================  ======  ==================================================================================
leverage               25      25 x ln(L) / ln(50), 0 at 1x or less, 25 at 50x or more
liquidation_distance   25      25 x (50 - d) / 45 for distance d in %: 0 at 50% or more (or no liquidation
                               price), 25 at 5% or less (and when the price is already beyond it)
var_99_leveraged       20      20 x (VaR99 x L) / 0.5: the 1-day VaR99 as a fraction of collateral; 20 from 50%
volatility             10      10 x (sigma - 0.2) / 1.0 for annualised volatility sigma: 0 up to 20%, 10 from 120%
drawdown               10      10 x MDD / 0.8: the price path's max drawdown; 10 from 80%
concentration          10      10 x (HHI - 0.25) / 0.75 for the Herfindahl index of the portfolio's notional
                               weights; only scored when a portfolio is given (one position alone is left out)
=====================  ======  ==================================================================================

Levels: LOW below 25, MEDIUM below 50, HIGH below 75, CRITICAL from 75. With leverage fixed at 1x, a market like
SOL scores LOW to MEDIUM on its volatility and drawdown alone; leverage and liquidation distance take it higher.

Alerts are threshold crossings, independent of the score: liquidation closer than ``LIQUIDATION_CRITICAL_PCT``
(or the user's minimum distance, if larger) is critical and closer than twice that a warning; VaR99 over the user's
limit, leverage over the user's limit, and a margin ratio from ``MARGIN_RATIO_WARNING`` are warnings; leverage over
the margin tier's maximum and a margin ratio from ``MARGIN_RATIO_CRITICAL`` are critical.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from mikey.domain import RiskAlert, RiskCheck, RiskFactor
from mikey.risk.checks import RiskLimits

RiskLevel = Literal["LOW", "MEDIUM", "HIGH", "CRITICAL"]

LIQUIDATION_CRITICAL_PCT = 10.0
MARGIN_RATIO_WARNING = 0.5
MARGIN_RATIO_CRITICAL = 0.8
TOP_REASONS = 3


def _clip01(x: float) -> float:
    return 0.0 if x <= 0 else 1.0 if x >= 1 else x


def leverage_points(leverage: float) -> float:
    return 25.0 * _clip01(math.log(leverage) / math.log(50.0)) if leverage > 1 else 0.0


def distance_points(distance_pct: float | None) -> float:
    return 0.0 if distance_pct is None else 25.0 * _clip01((50.0 - distance_pct) / 45.0)


def var_points(var_99: float, leverage: float) -> float:
    return 20.0 * _clip01(var_99 * leverage / 0.5)


def volatility_points(volatility: float) -> float:
    return 10.0 * _clip01((volatility - 0.2) / 1.0)


def drawdown_points(drawdown: float) -> float:
    return 10.0 * _clip01(drawdown / 0.8)


def concentration_points(hhi: float) -> float:
    return 10.0 * _clip01((hhi - 0.25) / 0.75)


def level_of(score: float) -> RiskLevel:
    """LOW < 25 <= MEDIUM < 50 <= HIGH < 75 <= CRITICAL."""
    return "LOW" if score < 25 else "MEDIUM" if score < 50 else "HIGH" if score < 75 else "CRITICAL"


def factors(*, leverage: float, distance_pct: float | None, var_99: float, volatility: float, drawdown: float,
            concentration: float | None = None) -> list[RiskFactor]:
    """The score's factors with their points and a sentence each (``var_99`` is a fraction of notional)."""
    if distance_pct is None:
        distance_value = 100.0  # a long that cannot be liquidated survives a 100% fall
        distance_reason = "The position cannot be liquidated: its collateral covers a fall to zero."
    elif distance_pct <= 0:
        distance_value, distance_reason = distance_pct, "The price is already beyond the liquidation price."
    else:
        distance_value = distance_pct
        distance_reason = f"Liquidation is {distance_pct:.1f}% away from the current price."
    var_loss = var_99 * leverage
    out = [
        RiskFactor(name="leverage", value=leverage, points=leverage_points(leverage),
                   reason=f"Leverage is {leverage:.1f}x: a 1% price move changes the collateral by {leverage:.1f}%."),
        RiskFactor(name="liquidation_distance", value=distance_value, points=distance_points(distance_pct),
                   reason=distance_reason),
        RiskFactor(name="var_99_leveraged", value=var_loss, points=var_points(var_99, leverage),
                   reason=f"On a 1-in-100 bad day the position loses {var_99:.1%} of notional, "
                          f"{min(var_loss, 1.0):.0%} of collateral."),
        RiskFactor(name="volatility", value=volatility, points=volatility_points(volatility),
                   reason=f"The market's annualised volatility is {volatility:.0%}."),
        RiskFactor(name="drawdown", value=drawdown, points=drawdown_points(drawdown),
                   reason=f"The price fell as much as {drawdown:.0%} from a peak in the history."),
    ]
    if concentration is not None:
        out.append(RiskFactor(name="concentration", value=concentration, points=concentration_points(concentration),
                              reason=f"The portfolio's concentration (Herfindahl index) is {concentration:.2f}."))
    return out


def total(factor_list: Sequence[RiskFactor]) -> float:
    """The score: the sum of the factors' points (at most 100 by construction)."""
    return min(100.0, math.fsum(f.points for f in factor_list))


def reasons(factor_list: Sequence[RiskFactor], checks: Sequence[RiskCheck] = (), *, top: int = TOP_REASONS
            ) -> list[str]:
    """Plain sentences: the biggest contributors to the score first, then every failed check."""
    ranked = sorted((f for f in factor_list if f.points > 0), key=lambda f: f.points, reverse=True)[:top]
    out = [f"{f.reason} ({f.points:.1f} of the score's points)" for f in ranked]
    out.extend(f"Limit breached: {c.detail}" for c in checks if not c.passed)
    return out


def alerts(*, distance_pct: float | None, var_loss_pct: float, leverage: float, margin_ratio: float,
           limits: RiskLimits, tier_max_leverage: float | None = None) -> list[RiskAlert]:
    """Threshold crossings (see the module docstring); ``var_loss_pct`` is VaR99 in % of collateral."""
    out: list[RiskAlert] = []
    critical = max(LIQUIDATION_CRITICAL_PCT, limits.min_distance_to_liquidation_pct)
    if distance_pct is not None:
        if distance_pct <= 0:
            out.append(RiskAlert(kind="liquidation_distance", severity="critical", value=distance_pct,
                                 threshold=0.0, message="The price is already beyond the liquidation price."))
        elif distance_pct < critical:
            out.append(RiskAlert(kind="liquidation_distance", severity="critical", value=distance_pct,
                                 threshold=critical,
                                 message=f"Liquidation is only {distance_pct:.2f}% away (under {critical:g}%)."))
        elif distance_pct < 2 * critical:
            out.append(RiskAlert(kind="liquidation_distance", severity="warning", value=distance_pct,
                                 threshold=2 * critical,
                                 message=f"Liquidation is {distance_pct:.2f}% away (under {2 * critical:g}%)."))
    if var_loss_pct > limits.max_var_99_pct:
        out.append(RiskAlert(kind="var_limit", severity="warning", value=var_loss_pct, threshold=limits.max_var_99_pct,
                             message=f"1-day VaR99 is {var_loss_pct:.1f}% of collateral, over the "
                                     f"{limits.max_var_99_pct:g}% limit."))
    if tier_max_leverage is not None and leverage > tier_max_leverage:
        out.append(RiskAlert(kind="tier_leverage", severity="critical", value=leverage, threshold=tier_max_leverage,
                             message=f"Leverage {leverage:.2f}x is above the {tier_max_leverage:g}x the margin tier "
                                     "allows for this notional; a venue would refuse the position."))
    if leverage > limits.max_leverage:
        out.append(RiskAlert(kind="leverage_limit", severity="warning", value=leverage, threshold=limits.max_leverage,
                             message=f"Leverage {leverage:.2f}x is over your {limits.max_leverage:g}x limit."))
    if margin_ratio >= MARGIN_RATIO_CRITICAL:
        out.append(RiskAlert(kind="margin_ratio", severity="critical", value=margin_ratio,
                             threshold=MARGIN_RATIO_CRITICAL,
                             message=f"Margin ratio is {margin_ratio:.0%}: liquidation comes at 100%."))
    elif margin_ratio >= MARGIN_RATIO_WARNING:
        out.append(RiskAlert(kind="margin_ratio", severity="warning", value=margin_ratio,
                             threshold=MARGIN_RATIO_WARNING,
                             message=f"Margin ratio is {margin_ratio:.0%}: liquidation comes at 100%."))
    return out
