"""Vectorised backtest of signal positions over close prices, with fees and slippage, next to buy-and-hold.

Conventions, chosen so that no bar can use what it could not have known:

* Timing. ``positions[t]`` is decided at the close of bar t (from the signal of bar t) and held during bar t+1, i.e.
  it earns ``close[t+1] / close[t] - 1``: the held position is ``positions.shift(1)``, flat on the first bar. The
  position of the last bar has no bar left to be held in.
* Costs. Each unit of position traded (flat -> long is 1, long -> short is 2) costs ``fee_bps + slippage_bps`` of
  equity, filled at close t and charged in bar t+1: ``1 + s_t = (1 - c) ** |held_t - held_{t-1}| * (1 + held_t * r_t)``.
  A position still open at the end is marked to the last close with no exit cost. Buy-and-hold pays no costs.
* Annualisation. Bars per year are 365 for daily bars that include weekends (crypto), 252 for daily bars that do
  not; intraday or multi-day bars that include weekends scale 365 calendar days by the bar spacing. CAGR uses
  ``years = (bars - 1) / P`` for P bars a year. Sharpe is ``mean(s) / std(s, ddof=1) * sqrt(P)`` and Sortino
  ``mean(s) / sqrt(mean(min(s, 0) ** 2)) * sqrt(P)``, over every bar-to-bar period (flat ones
  too), risk-free rate 0; either is 0.0 when its denominator is 0 (no risk taken), never NaN.
* Max drawdown is the deepest fall of equity from its running peak, a negative fraction (-0.25 is a 25% fall).
* Trades and hit rate. A trade is a run of bars holding the same non-zero position; the hit rate is the share of
  trades whose return, net of their entry and exit costs, is positive (a trade open at the end is marked to the last
  close). 0.0 when there are no trades. Exposure is the share of bar-to-bar periods with a non-zero position.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

import numpy as np
import pandas as pd

from mikey.analysis import signals
from mikey.domain import BacktestResult, PatternFinding, SentimentScore
from mikey.errors import DataUnavailable, InvalidInput

MIN_BARS = 3
"""Two bar-to-bar returns are the fewest a standard deviation (Sharpe) can be taken over."""
DEFAULT_FEE_BPS = 10.0
"""Taker fee on a Solana perps venue is about 5-10 bps of notional; take the high end."""
DEFAULT_SLIPPAGE_BPS = 5.0


def bars_per_year(index: pd.DatetimeIndex) -> float:
    """Bars per year for annualising: 365 (crypto daily) or 252 (daily without weekend bars); see module docstring."""
    step = pd.Series(index).diff().median()
    has_weekend = bool((index.day_of_week >= 5).any())
    day = pd.Timedelta(days=1)
    if step == day:
        return 365.0 if has_weekend else 252.0
    if has_weekend or step > day:
        return pd.Timedelta(days=365) / step
    raise InvalidInput("cannot tell the bars per year of intraday bars without weekends; pass periods_per_year")


def equity_curve(
    close: pd.Series, positions: pd.Series, *, fee_bps: float = DEFAULT_FEE_BPS,
    slippage_bps: float = DEFAULT_SLIPPAGE_BPS,
) -> pd.DataFrame:
    """Per bar: target ``position``, ``held`` position, ``asset_return``, ``cost`` factor, ``strategy_return``,
    ``equity`` (1.0 at the first bar). The basis of every metric, and of charts of the strategy."""
    close, positions = _validate(close, positions, fee_bps, slippage_bps)
    held = positions.shift(1, fill_value=0).astype(float)
    asset = close.pct_change().fillna(0.0)
    cost_rate = (fee_bps + slippage_bps) / 10_000
    cost = (1.0 - cost_rate) ** held.diff().fillna(held).abs()
    strategy = cost * (1.0 + held * asset) - 1.0
    return pd.DataFrame({
        "close": close, "position": positions, "held": held, "asset_return": asset, "cost": cost,
        "strategy_return": strategy, "equity": (1.0 + strategy).cumprod(),
    })


def backtest(
    close: pd.Series,
    positions: pd.Series,
    *,
    fee_bps: float = DEFAULT_FEE_BPS,
    slippage_bps: float = DEFAULT_SLIPPAGE_BPS,
    periods_per_year: float | None = None,
) -> BacktestResult:
    """Metrics of holding ``positions`` (+1 / 0 / -1 per bar, from ``signals.actions``) over ``close``."""
    curve = equity_curve(close, positions, fee_bps=fee_bps, slippage_bps=slippage_bps)
    index = curve.index
    ppy = bars_per_year(index) if periods_per_year is None else periods_per_year
    if not (np.isfinite(ppy) and ppy > 0):
        raise InvalidInput(f"periods_per_year must be positive; got {ppy}")
    years = (len(curve) - 1) / ppy
    returns = curve["strategy_return"].to_numpy()[1:]
    held = curve["held"].to_numpy()[1:]
    prices = curve["close"].to_numpy()
    trade_returns = _trade_returns(curve, (fee_bps + slippage_bps) / 10_000)
    total = float(curve["equity"].iloc[-1] - 1.0)
    hold = float(prices[-1] / prices[0] - 1.0)
    return BacktestResult(
        start=_utc(index[0]),
        end=_utc(index[-1]),
        bars=len(curve),
        trades=len(trade_returns),
        total_return=total,
        cagr=_cagr(total, years),
        sharpe=_ratio(returns.mean(), returns.std(ddof=1), ppy),
        sortino=_ratio(returns.mean(), float(np.sqrt(np.mean(np.minimum(returns, 0.0) ** 2))), ppy),
        max_drawdown=_max_drawdown(curve["equity"].to_numpy()),
        hit_rate=float((trade_returns > 0).mean()) if len(trade_returns) else 0.0,
        exposure=float((held != 0).mean()),
        buy_and_hold_return=hold,
        buy_and_hold_cagr=_cagr(hold, years),
        buy_and_hold_max_drawdown=_max_drawdown(prices),
        fee_bps=fee_bps,
        slippage_bps=slippage_bps,
    )


def backtest_signals(
    features: pd.DataFrame,
    *,
    weights: Mapping[str, float] | None = None,
    threshold: float = signals.DEFAULT_THRESHOLD,
    allow_short: bool = False,
    patterns: Sequence[PatternFinding] | None = None,
    sentiment: SentimentScore | Sequence[SentimentScore] | None = None,
    fee_bps: float = DEFAULT_FEE_BPS,
    slippage_bps: float = DEFAULT_SLIPPAGE_BPS,
) -> BacktestResult:
    """Backtest the signal rules themselves: score every bar, turn scores into positions, hold them a bar later.

    ``features`` is what ``signals.score_series`` reads, with the bar's ``close``.
    """
    if "close" not in features.columns:
        raise InvalidInput("backtest features lack the close column; join the candles frame and the features frame")
    score = signals.score_series(features, weights, patterns=patterns, sentiment=sentiment)
    positions = signals.actions(score, threshold, allow_short=allow_short)
    return backtest(features["close"], positions, fee_bps=fee_bps, slippage_bps=slippage_bps)


def _validate(close: pd.Series, positions: pd.Series, fee_bps: float, slippage_bps: float) -> tuple[pd.Series, ...]:
    if not isinstance(close, pd.Series) or not isinstance(close.index, pd.DatetimeIndex):
        raise InvalidInput("backtest prices must be a Series indexed by bar time (a DatetimeIndex)")
    if len(close) < MIN_BARS:
        raise DataUnavailable(f"a backtest needs at least {MIN_BARS} bars; got {len(close)}")
    if not (close.index.is_monotonic_increasing and close.index.is_unique):
        raise InvalidInput("backtest prices must be in time order with one row per bar")
    values = close.to_numpy(dtype=float)
    if not (np.isfinite(values).all() and (values > 0).all()):
        raise InvalidInput("backtest prices must be finite and positive on every bar")
    if not isinstance(positions, pd.Series) or not positions.index.equals(close.index):
        raise InvalidInput("positions must be a Series on the same bars as the prices")
    if not positions.isin([-1, 0, 1]).all():
        raise InvalidInput("positions must be +1 (long), 0 (flat) or -1 (short) on every bar")
    for name, bps in (("fee_bps", fee_bps), ("slippage_bps", slippage_bps)):
        if not (np.isfinite(bps) and 0 <= bps < 10_000):
            raise InvalidInput(f"{name} must be in [0, 10000); got {bps}")
    return close.astype(float), positions.astype(int)


def _trade_returns(curve: pd.DataFrame, cost_rate: float) -> np.ndarray:
    """Net return of each run of one non-zero held position: entry cost, gross moves, exit cost if it closed."""
    held = curve["held"]
    run = (held != held.shift(fill_value=0)).cumsum()
    in_market = held != 0
    gross = (1.0 + held * curve["asset_return"])[in_market].groupby(run[in_market]).prod()
    size = held[in_market].groupby(run[in_market]).first().abs()
    closed = np.ones(len(gross))
    if len(gross) and in_market.iloc[-1]:
        closed[-1] = 0.0  # still open at the end: marked to market, no exit cost
    net = gross.to_numpy() * (1.0 - cost_rate) ** (size.to_numpy() * (1.0 + closed)) - 1.0
    return net


def _cagr(total: float, years: float) -> float:
    return -1.0 if total <= -1.0 else float((1.0 + total) ** (1.0 / years) - 1.0)


def _ratio(mean: float, dev: float, ppy: float) -> float:
    return 0.0 if dev == 0 or not np.isfinite(dev) else float(mean / dev * np.sqrt(ppy))


def _max_drawdown(series: np.ndarray) -> float:
    return float(np.min(series / np.maximum.accumulate(series) - 1.0))


def _utc(moment: pd.Timestamp) -> datetime:
    ts = moment.tz_localize("UTC") if moment.tz is None else moment.tz_convert("UTC")
    return ts.to_pydatetime()
