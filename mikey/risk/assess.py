"""``assess``: the one entry point of the risk engine. The CLI, the HTTP API and the agent tool all call it.

Input rules (each breach raises ``InvalidInput`` naming the field, except where noted):

- ``market`` must be a supported market (``UnknownSymbol`` otherwise); aliases such as ``sol-perp`` are accepted.
  A caller assessing the user's own history (a CSV of any symbol, e.g. SPY) names its market with ``market=``;
  a market without a tier table of its own gets ``OWN_MARKET_TIERS`` unless the position gives its maintenance
  margin.
- ``entry_price`` defaults to the current price; the current price defaults to the last close used.
- **Leverage.** The engine always uses the effective leverage, notional / collateral (notional at the entry
  price). A given ``leverage`` is checked against it, never silently preferred: in isolated margin it must agree
  within 1% (``LEVERAGE_TOLERANCE``); in cross margin ``collateral`` is the account balance and ``leverage`` the
  venue's setting, which only fixes the initial margin, so notional / leverage must fit in that balance. Effective
  leverage above ``MAX_LEVERAGE`` (the same bound as ``PositionInput.leverage``) is refused.
- **Maintenance margin.** ``maintenance_margin_ratio`` (with ``maintenance_amount``, default 0) replaces the
  market's tier table; an amount without a ratio is refused (an amount belongs to a tier's rate), as is an amount
  larger than notional x ratio. A position whose collateral is already at or below its maintenance margin at entry
  (margin ratio >= 1) cannot be opened and is refused.
- **History.** Either ``closes`` (a pandas Series of daily closes with a UTC ``DatetimeIndex``, oldest first; a
  plain sequence is accepted and then has no dates) or ``returns`` (daily simple returns; also read from
  ``position.returns``), not both. Closes after ``as_of`` are ignored (the replay clock); fewer than 3 closes, or
  none on or before ``as_of``, raise ``DataUnavailable``. Returns rebuild a price path 1, (1+r1), ... for the
  drawdown and are annualised as crypto (365 days); closes use 365, or 252 when the bars have no weekend day.
- ``as_of`` defaults to the last close's time, or to now when only returns (or undated closes) are given.
- ``history_bars`` is the number of closes used, or the number of returns + 1 (the implied price path).
- **Finite figures.** Returns are bounded (see ``market_risk``); a notional under ``MIN_NOTIONAL`` is refused, as is
  a size so small against its collateral that the liquidation price leaves float range. Should any figure still
  come out infinite or NaN, the inputs are refused with ``InvalidInput`` naming it, never answered with a non-number.

Liquidation uses Binance's mark-price basis (see ``liquidation``). VaR, CVaR and volatility follow
``market_risk``; checks, score and alerts follow ``checks`` and ``score``. The hot path is numpy and floats:
about 0.15 ms for a year of daily closes (median, one core).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import ValidationError

from mikey.domain import PositionInput, RiskAssessment
from mikey.errors import DataUnavailable, InvalidInput
from mikey.market import symbols
from mikey.risk import checks as risk_checks
from mikey.risk import liquidation as liq
from mikey.risk import market_risk as mr
from mikey.risk import score as risk_score
from mikey.risk.checks import RiskLimits
from mikey.risk.sizing import recommended_max_size

if TYPE_CHECKING:
    import pandas as pd

LEVERAGE_TOLERANCE = 0.01
"""Relative difference allowed between a given leverage and notional / collateral (isolated margin)."""
MAX_LEVERAGE = 100.0
"""Largest effective leverage accepted, as ``PositionInput.leverage``."""
MIN_NOTIONAL = 1e-6
"""Smallest notional (USD) assessed: below it a position is no trade, and its figures underflow to zero."""
MIN_CLOSES = 3
"""Closes needed for two returns, the fewest a sample standard deviation can rest on."""
DEFAULT_LIMITS = RiskLimits()
OWN_MARKET_TIERS = liq.DEFAULT_TIERS["SOL"]
"""Tier table of a market MIKEY has none for (the user's own history, e.g. SPY): the strictest bundled one, SOL's
(1% maintenance margin up to 50,000 USD, rising with size). A position's ``maintenance_margin_ratio`` replaces it."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_PER_MICROSECOND = {"s": 1e-6, "ms": 1e-3, "us": 1.0, "ns": 1e3}


@dataclass(frozen=True, slots=True)
class _History:
    """Returns, the price path and their dates, as the market-risk figures need them."""

    returns: np.ndarray
    path: np.ndarray
    """Closes, or the path 1, (1 + r1), ... rebuilt from returns."""
    periods: int
    """Annualisation: 365 or 252 (see ``market_risk.periods_per_year``)."""
    last_time: datetime | None
    bars: int


def assess(position: PositionInput, *, closes: pd.Series | Sequence[float] | None = None,
           returns: Sequence[float] | None = None, current_price: float | None = None,
           limits: RiskLimits | None = None, tiers: Mapping[str, Sequence[liq.MarginTier]] | None = None,
           as_of: datetime | None = None, market: str | None = None) -> RiskAssessment:
    """The risk of one perpetual position: liquidation, VaR/CVaR, volatility, drawdown, checks, score and alerts.

    Args:
        position: the position (market, side, size, collateral, ...), as the CLI and the API receive it.
        closes: daily closes, a pandas Series with a UTC DatetimeIndex (or a plain sequence, undated).
        returns: daily simple returns instead of closes (default: ``position.returns``).
        current_price: the market's price now (default: the last close used).
        limits: the trader's limits (default: ``RiskLimits()``).
        tiers: margin tier tables by market symbol, replacing ``liquidation.DEFAULT_TIERS`` for those markets.
        as_of: the assessment's time and the history's clock (default: see the module docstring).
        market: the market the history is of when it is the user's own (any symbol); default: ``position.market``,
            which must then be a covered market.

    Raises:
        UnknownSymbol: the market is not covered (and ``market`` is not given).
        InvalidInput: an impossible or inconsistent input (see the module docstring).
        DataUnavailable: too little history.
    """
    market = symbols.resolve(position.market) if market is None else market
    limits = DEFAULT_LIMITS if limits is None else limits
    if as_of is not None and as_of.tzinfo is None:
        raise InvalidInput("as_of must be timezone-aware (UTC)")
    history = _history(closes, position.returns if returns is None else returns, as_of)

    current = history.path[-1] if current_price is None and closes is not None else current_price
    if current is None:
        raise InvalidInput("current_price is needed when the history is given as returns")
    current = float(current)
    if not (math.isfinite(current) and current > 0):
        raise InvalidInput(f"current_price must be a positive number; got {current!r}")
    side = position.side
    s = liq.side_sign(side)
    entry = current if position.entry_price is None else position.entry_price
    size, collateral = position.size, position.collateral
    notional = size * entry
    if not math.isfinite(notional):
        raise InvalidInput("size x entry_price overflows: the notional is not a finite number")
    if notional < MIN_NOTIONAL:
        raise InvalidInput(f"size x entry_price = {notional:g} USD is below {MIN_NOTIONAL:g} USD: too small to be a "
                           "position")
    leverage = _leverage(position, notional)
    table = _tier_table(position, market, notional, tiers)

    ratio = liq.margin_ratio(side, size, entry, collateral, table)
    if ratio >= 1:
        mm = liq.maintenance_margin(table, notional)
        raise InvalidInput(f"collateral {collateral:g} does not cover the maintenance margin {mm:g} of a "
                           f"{notional:g} notional: the position would be liquidated as it opens")
    liquidation = liq.liquidation_price(side, size, entry, collateral, table)
    distance = liq.distance_to_liquidation_pct(side, liquidation, current)
    if liquidation is not None and not (math.isfinite(liquidation) and math.isfinite(distance or 0.0)):
        raise InvalidInput(f"size {size:g} is too small for collateral {collateral:g}: the liquidation price is beyond "
                           "floating-point range")

    rets = history.returns
    ascending = np.sort(s * rets)
    var_95, cvar_95 = mr.historical_var_cvar(ascending, 0.95, ascending=ascending)
    var_99, cvar_99 = mr.historical_var_cvar(ascending, 0.99, ascending=ascending)
    mean, std = float(rets.mean()), float(rets.std(ddof=1))
    volatility = std * math.sqrt(history.periods)
    drawdown = mr.max_drawdown(history.path)

    tier_max_leverage = liq.tier_for_notional(table, notional).max_leverage
    try:  # the result models refuse a non-finite number: such inputs get InvalidInput, not an answer with nulls
        check_list = risk_checks.pre_trade_checks(
            notional=notional, leverage=leverage, worst_day_move=-float(ascending[0]),
            adverse_move=mr.max_adverse_move(history.path, s), var_99=var_99, distance_pct=distance, limits=limits,
            tier_max_leverage=tier_max_leverage)
        factor_list = risk_score.factors(leverage=leverage, distance_pct=distance, var_99=var_99,
                                         volatility=volatility, drawdown=drawdown)
        total = risk_score.total(factor_list)
        sizing = recommended_max_size(collateral=collateral, price=current, max_leverage=limits.max_leverage,
                                      max_position_notional=limits.max_position_notional, var_99=var_99,
                                      var_budget_fraction=limits.max_var_99_pct / 100.0,
                                      tiers=table if position.maintenance_margin_ratio is None else ())
        reasons = risk_score.reasons(factor_list, check_list)
        if table is OWN_MARKET_TIERS and market not in liq.DEFAULT_TIERS:
            reasons.append(f"MIKEY has no margin tiers for {market}: the maintenance margin follows its strictest "
                           "table (SOL's); give maintenance_margin_ratio for your venue's.")
        if size > sizing.size:
            reasons.append(f"The size {size:g} is above the recommended maximum of {sizing.size:.6g}, set by "
                           f"{sizing.reason}.")
        alert_list = risk_score.alerts(
            distance_pct=distance, var_loss_pct=risk_checks.loss_pct_of_collateral(var_99, leverage),
            leverage=leverage, margin_ratio=ratio, limits=limits, tier_max_leverage=tier_max_leverage)
        when = as_of or history.last_time or datetime.now(UTC)
        return RiskAssessment(
            market=market, side=side, size=size, entry_price=entry, notional=notional, collateral=collateral,
            leverage=leverage, liquidation_price=liquidation, distance_to_liquidation_pct=distance,
            margin_ratio=ratio, var_95=var_95, cvar_95=cvar_95, var_99=var_99, cvar_99=cvar_99,
            parametric_var_95=mr.parametric_var(rets, 0.95, side=s, mean=mean, std=std),
            parametric_var_99=mr.parametric_var(rets, 0.99, side=s, mean=mean, std=std),
            volatility_annualized=volatility, ewma_volatility_annualized=mr.ewma_volatility(rets, history.periods),
            max_drawdown=drawdown, risk_score=total, risk_level=risk_score.level_of(total), factors=factor_list,
            recommended_max_size=sizing.size, checks=check_list, alerts=alert_list, reasons=reasons,
            as_of=when.astimezone(UTC), history_bars=history.bars,
        )
    except ValidationError as exc:
        raise _not_finite(exc) from exc


def _not_finite(exc: ValidationError) -> Exception:
    """``InvalidInput`` naming the figures that came out infinite or NaN: such inputs are refused, not answered with
    a non-number. Any other validation error is the engine's own bug and stays one."""
    errors = exc.errors(include_url=False, include_input=False)
    if any(e["type"] != "finite_number" for e in errors):
        return exc
    figures = ", ".join(".".join(str(p) for p in e["loc"]) for e in errors)
    return InvalidInput(f"with these inputs the assessment's {figures} would not be a finite number (beyond "
                        "floating-point range)")


def _leverage(position: PositionInput, notional: float) -> float:
    effective = notional / position.collateral
    given = position.leverage
    if given is not None:
        if position.margin_mode == "isolated" and not math.isclose(given, effective, rel_tol=LEVERAGE_TOLERANCE):
            raise InvalidInput(
                f"leverage {given:g} disagrees with notional / collateral = {notional:g} / {position.collateral:g} "
                f"= {effective:.4g}; give leverage that matches, or leave it out")
        if position.margin_mode == "cross" and notional / given > position.collateral * (1 + 1e-9):
            raise InvalidInput(
                f"at leverage {given:g} the initial margin {notional / given:g} exceeds the cross account balance "
                f"(collateral) {position.collateral:g}")
    if effective > MAX_LEVERAGE * (1 + 1e-9):  # 100x given as size, entry and collateral rounds to 100.00000000000001
        raise InvalidInput(f"leverage notional / collateral = {effective:.4g} is above the {MAX_LEVERAGE:g}x maximum")
    return effective


def _tier_table(position: PositionInput, market: str, notional: float,
                tiers: Mapping[str, Sequence[liq.MarginTier]] | None) -> liq.TierTable:
    if position.maintenance_margin_ratio is not None:
        amount = position.maintenance_amount or 0.0
        if amount > notional * position.maintenance_margin_ratio:
            raise InvalidInput(f"maintenance_amount {amount:g} exceeds notional x maintenance_margin_ratio "
                               f"({notional * position.maintenance_margin_ratio:g}): the maintenance margin would be "
                               "negative")
        return liq.single_tier(position.maintenance_margin_ratio, amount)
    if position.maintenance_amount is not None:
        raise InvalidInput("maintenance_amount needs maintenance_margin_ratio: an amount belongs to a tier's rate")
    if tiers is not None and market in tiers:
        return liq.validate_tiers(tiers[market])
    return liq.DEFAULT_TIERS.get(market, OWN_MARKET_TIERS)


def _history(closes: Any, returns: Sequence[float] | None, as_of: datetime | None) -> _History:
    if closes is not None and returns is not None:
        raise InvalidInput("give the history as closes or as returns, not both")
    if returns is not None:
        rets = mr.as_returns(returns)
        return _History(rets, mr.price_path(rets), mr.CRYPTO_PERIODS, None, len(rets) + 1)
    if closes is None:
        raise InvalidInput("market risk needs history: daily closes or returns")
    if isinstance(closes, list | tuple | np.ndarray):  # an undated sequence of closes
        prices, stamps, unit = np.asarray(closes, dtype=np.float64), None, "ns"
    else:
        import pandas as pd  # already loaded: the caller built a Series

        index = getattr(closes, "index", None)
        if not isinstance(closes, pd.Series) or not isinstance(index, pd.DatetimeIndex):
            raise InvalidInput("closes must be indexed by date (a DatetimeIndex, UTC)")
        try:
            prices = closes.to_numpy(dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"closes must be numbers ({exc})") from exc
        stamps, unit = index.asi8, index.unit  # epoch-based, so UTC whatever the index's zone
        if len(stamps) > 1 and not bool((np.diff(stamps) > 0).all()):
            raise InvalidInput("closes must be in date order, oldest first, without duplicated dates")
        if as_of is not None:
            cutoff = (as_of - _EPOCH) // timedelta(microseconds=1) * _PER_MICROSECOND[unit]
            keep = int(np.searchsorted(stamps, cutoff, side="right"))
            if keep == 0 and len(stamps):
                raise DataUnavailable(f"no closes on or before {as_of.isoformat()}")
            prices, stamps = prices[:keep], stamps[:keep]
    if len(prices) < MIN_CLOSES:
        raise DataUnavailable(f"market risk needs at least {MIN_CLOSES} daily closes; got {len(prices)}")
    prices = mr.as_prices(prices)
    last_time = None
    if stamps is not None:
        last_time = _EPOCH + timedelta(microseconds=int(stamps[-1]) / _PER_MICROSECOND[unit])
    return _History(prices[1:] / prices[:-1] - 1.0, prices, mr.periods_per_year(stamps, unit=unit), last_time,
                    len(prices))
