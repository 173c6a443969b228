"""Market risk from daily closes: returns, VaR and CVaR, volatility, drawdown, correlation and concentration.

Conventions (the issue's contract; every function here follows them):

- Returns are simple close-to-close returns, ``r_t = P_t / P_(t-1) - 1``.
- A position's returns are ``side x r`` (side +1 long, -1 short), so every figure is "from the position's side".
- Historical VaR at level c is minus the (1 - c) quantile of the position's returns, with linear interpolation
  between order statistics (numpy's default ``method="linear"``: position ``h = (n - 1)(1 - c)``). CVaR is minus the
  mean of the returns at or below that quantile. Both are 1-day fractions of notional; a positive VaR is a loss.
  They may be negative when even the tail of the history is a gain (they are not floored at zero).
- Parametric VaR assumes normal returns: ``VaR = -(mu + z_(1-c) x sigma)``, with the mean and sample standard
  deviation (ddof=1) of the position's returns and ``z`` the standard normal quantile.
- Volatility is the sample standard deviation (ddof=1) of daily returns, annualised with sqrt(365) for crypto
  (bars every day) and sqrt(252) when the history has no weekend bars (an exchange calendar).
- EWMA volatility is RiskMetrics' ``s2_t = lambda x s2_(t-1) + (1 - lambda) x r_(t-1)^2`` with lambda = 0.94 on
  zero-mean returns. Seed: the mean of the squared returns of the first ``EWMA_SEED_BARS`` (20) returns. The value
  returned is the forecast for the day after the last return, annualised like the plain volatility.
- Max drawdown is the largest fall from a running peak of the price path, ``max_t (1 - P_t / max_(s<=t) P_s)``,
  a fraction in [0, 1).
- A daily return is a fraction above -1 (-100%: no price left) and at most ``MAX_DAILY_RETURN`` (+1,000%), and the
  returns must compound to a price path that stays a positive, finite float: anything else is ``InvalidInput``
  naming ``returns``, never an infinite or NaN figure.

Everything is numpy on float64 arrays: no pandas in the hot path.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from statistics import NormalDist

import numpy as np

from mikey.domain import MAX_DAILY_RETURN
from mikey.errors import InvalidInput

EWMA_LAMBDA = 0.94
"""RiskMetrics' decay for daily data."""
EWMA_SEED_BARS = 20
"""Returns whose mean square seeds the EWMA variance."""
CRYPTO_PERIODS = 365
EXCHANGE_PERIODS = 252
_NS_PER_DAY = 86_400 * 10**9
_UNIT_PER_DAY = {"s": 86_400, "ms": 86_400_000, "us": 86_400_000_000, "ns": _NS_PER_DAY}


def as_prices(values: Sequence[float] | np.ndarray) -> np.ndarray:
    """``values`` as a float64 array of prices; raises ``InvalidInput`` for non-finite or non-positive ones, or for
    prices so far apart that their ratio (a return, a drawdown) is beyond floating-point range."""
    prices = np.asarray(values, dtype=np.float64)
    if prices.ndim != 1:
        raise InvalidInput("prices must be a one-dimensional series")
    if not np.isfinite(prices).all():
        raise InvalidInput("prices contain NaN or infinity")
    if (prices <= 0).any():
        raise InvalidInput("prices must be positive")
    if len(prices) and not _within_range(prices):
        raise InvalidInput(f"prices span {prices.min():g} to {prices.max():g}: their ratios are beyond floating-point "
                           "range")
    return prices


def _within_range(path: np.ndarray) -> bool:
    """Whether every ratio of two of these positive prices (drawdowns, moves) is a finite float."""
    with np.errstate(over="ignore"):
        return bool(np.isfinite(path.max() / path.min()))


def as_returns(values: Sequence[float] | np.ndarray, *, min_count: int = 2) -> np.ndarray:
    """``values`` as a float64 array of daily simple returns; raises ``InvalidInput`` (its message starting with
    ``returns``) for NaN, inf, a return at or below -100% or above ``MAX_DAILY_RETURN``, or too few."""
    returns = np.asarray(values, dtype=np.float64)
    if returns.ndim != 1:
        raise InvalidInput("returns must be a one-dimensional series")
    if len(returns) < min_count:
        raise InvalidInput(f"returns: at least {min_count} are needed; got {len(returns)}")
    if not np.isfinite(returns).all():
        raise InvalidInput(f"returns contain NaN or infinity (at position {_first(~np.isfinite(returns))})")
    if (returns <= -1).any():
        at = _first(returns <= -1)
        raise InvalidInput(f"returns: a daily return must be above -1 (-100% leaves no price); got {returns[at]:g} "
                           f"at position {at}")
    if (returns > MAX_DAILY_RETURN).any():
        at = _first(returns > MAX_DAILY_RETURN)
        raise InvalidInput(f"returns: a daily return must be at most {MAX_DAILY_RETURN:g} (+{MAX_DAILY_RETURN:.0%}), "
                           f"more than any perpetual market moves in a day; got {returns[at]:g} at position {at}")
    return returns


def _first(mask: np.ndarray) -> int:
    return int(np.argmax(mask))


def simple_returns(closes: Sequence[float] | np.ndarray) -> np.ndarray:
    """Close-to-close simple returns ``P_t / P_(t-1) - 1`` (one fewer than the closes)."""
    prices = as_prices(closes)
    return prices[1:] / prices[:-1] - 1.0


def price_path(returns: np.ndarray) -> np.ndarray:
    """The price path 1, (1 + r_1), (1 + r_1)(1 + r_2), ... that ``returns`` compound to (for drawdowns).

    Raises ``InvalidInput`` when the path, or the ratio of its highest to its lowest price, leaves the positive finite
    floats (e.g. hundreds of +1,000% days).
    """
    with np.errstate(over="ignore", under="ignore"):
        path = np.concatenate(([1.0], np.cumprod(1.0 + returns)))
    if not (np.isfinite(path).all() and (path > 0).all() and _within_range(path)):
        raise InvalidInput(f"returns compound to a price path from {path.min():g} to {path.max():g} times the "
                           "first price: beyond floating-point range, not a market's history")
    return path


def quantile_sorted(ascending: np.ndarray, q: float) -> float:
    """The ``q`` quantile of already-sorted data, numpy's ``method="linear"``: ``x[h]`` interpolated at h=(n-1)q."""
    h = (len(ascending) - 1) * q
    low = math.floor(h)
    if low + 1 >= len(ascending):
        return float(ascending[-1])
    return float(ascending[low] + (h - low) * (ascending[low + 1] - ascending[low]))


def historical_var_cvar(position_returns: np.ndarray, level: float, *, ascending: np.ndarray | None = None
                        ) -> tuple[float, float]:
    """(VaR, CVaR) at ``level`` (e.g. 0.99) of the position's returns, as positive-is-loss fractions.

    Pass ``ascending`` (the returns sorted) to reuse one sort for several levels.
    """
    data = np.sort(position_returns) if ascending is None else ascending
    q = quantile_sorted(data, 1.0 - level)
    tail = data[: int(np.searchsorted(data, q, side="right"))]  # every return at or below the quantile
    return -q, -float(tail.mean())


def historical_var(returns: np.ndarray, level: float = 0.99, *, side: int = 1) -> float:
    """1-day historical VaR at ``level`` of ``side x returns`` (fraction of notional, positive = loss)."""
    return historical_var_cvar(side * np.asarray(returns, dtype=np.float64), level)[0]


def historical_cvar(returns: np.ndarray, level: float = 0.99, *, side: int = 1) -> float:
    """1-day historical CVaR (expected shortfall) at ``level`` of ``side x returns``."""
    return historical_var_cvar(side * np.asarray(returns, dtype=np.float64), level)[1]


def parametric_var(returns: np.ndarray, level: float = 0.99, *, side: int = 1,
                   mean: float | None = None, std: float | None = None) -> float:
    """1-day normal VaR at ``level``: ``-(mu + z_(1-level) x sigma)`` of ``side x returns``.

    ``mean`` and ``std`` (of the unsigned returns, ddof=1) may be passed when already known.
    """
    data = np.asarray(returns, dtype=np.float64)
    mu = float(data.mean()) if mean is None else mean
    sigma = float(data.std(ddof=1)) if std is None else std
    return -(side * mu + NormalDist().inv_cdf(1.0 - level) * sigma)


def parametric_cvar(returns: np.ndarray, level: float = 0.99, *, side: int = 1) -> float:
    """1-day normal CVaR at ``level``: ``sigma x phi(z) / (1 - level) - mu`` of ``side x returns``."""
    data = np.asarray(returns, dtype=np.float64)
    z = NormalDist().inv_cdf(1.0 - level)
    return float(data.std(ddof=1)) * NormalDist().pdf(z) / (1.0 - level) - side * float(data.mean())


def periods_per_year(timestamps: np.ndarray | None, *, unit: str = "ns") -> int:
    """365 when the bars include a Saturday or Sunday (or no dates are known), else 252.

    ``timestamps`` are integers since the epoch in ``unit`` (a ``DatetimeIndex``'s ``asi8`` and ``unit``).
    """
    if timestamps is None or len(timestamps) == 0:
        return CRYPTO_PERIODS
    days = np.asarray(timestamps, dtype=np.int64) // _UNIT_PER_DAY[unit]
    weekday = (days + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    return CRYPTO_PERIODS if bool((weekday >= 5).any()) else EXCHANGE_PERIODS


def annualized_volatility(returns: np.ndarray, periods: int = CRYPTO_PERIODS) -> float:
    """Sample standard deviation (ddof=1) of daily returns x sqrt(periods)."""
    return float(np.asarray(returns, dtype=np.float64).std(ddof=1)) * math.sqrt(periods)


def ewma_volatility(returns: np.ndarray, periods: int = CRYPTO_PERIODS, *, lam: float = EWMA_LAMBDA,
                    seed_bars: int = EWMA_SEED_BARS) -> float:
    """RiskMetrics EWMA volatility forecast after the last return, annualised (seed: see the module docstring).

    Closed form of the recursion: ``s2_n = lam^n s2_0 + (1 - lam) sum_t lam^(n-1-t) r_t^2``.
    """
    data = np.asarray(returns, dtype=np.float64)
    squared = data * data
    seed = float(squared[:seed_bars].mean())
    n = len(data)
    weights = lam ** np.arange(n - 1, -1, -1, dtype=np.float64)
    variance = lam**n * seed + (1.0 - lam) * float(weights @ squared)
    return math.sqrt(variance * periods)


def max_drawdown(prices: np.ndarray) -> float:
    """Largest fall from a running peak, ``max_t (1 - P_t / max_(s<=t) P_s)``; 0.0 for a path that never falls."""
    path = np.asarray(prices, dtype=np.float64)
    return float((1.0 - path / np.maximum.accumulate(path)).max())


def max_adverse_move(prices: np.ndarray, side: int) -> float:
    """Largest move against a position held through the path: the max drawdown for a long; for a short, the largest
    rise from a running trough, ``max_t (P_t / min_(s<=t) P_s - 1)`` (it may exceed 1)."""
    path = np.asarray(prices, dtype=np.float64)
    if side > 0:
        return max_drawdown(path)
    return float((path / np.minimum.accumulate(path) - 1.0).max())


def correlation_matrix(returns: Mapping[str, Sequence[float] | np.ndarray]) -> tuple[list[str], np.ndarray]:
    """Pearson correlations of several markets' returns over the same dates: (names, matrix).

    The series must have equal lengths (aligned by the caller); a constant series has no correlation, so it is
    refused with ``InvalidInput`` rather than turned into NaN.
    """
    names = list(returns)
    if len(names) < 2:
        raise InvalidInput("a correlation matrix needs at least two markets")
    if not _same_length(returns, names):
        lengths = ", ".join(f"{name}: {len(returns[name])}" for name in names)
        raise InvalidInput(f"return series must cover the same dates (equal lengths); got {lengths}")
    data = np.vstack([as_returns(returns[name]) for name in names])
    flat = [name for name, row in zip(names, data, strict=True) if float(np.ptp(row)) == 0.0]
    if flat:
        raise InvalidInput(f"constant returns have no correlation: {', '.join(flat)}")
    return names, np.corrcoef(data)


def _same_length(returns: Mapping[str, Sequence[float] | np.ndarray], names: list[str]) -> bool:
    return len({len(returns[name]) for name in names}) == 1


def herfindahl(notionals: Sequence[float] | np.ndarray) -> float:
    """Concentration: the sum of squared weights |N_i| / sum |N_j|; 1/n for n equal positions, 1.0 for one."""
    gross = np.abs(np.asarray(notionals, dtype=np.float64))
    if len(gross) == 0 or not np.isfinite(gross).all() or gross.sum() <= 0:
        raise InvalidInput("concentration needs at least one finite, non-zero notional")
    weights = gross / gross.sum()
    return float(weights @ weights)


def portfolio_returns(returns: Mapping[str, Sequence[float] | np.ndarray], notionals: Mapping[str, float]
                      ) -> np.ndarray:
    """Daily P&L of a portfolio in USD: ``sum_i N_i x r_i`` with signed notionals (negative = short)."""
    missing = [name for name in notionals if name not in returns]
    if missing:
        raise InvalidInput(f"no returns for {', '.join(missing)}")
    names = list(notionals)
    if not _same_length(returns, names):
        raise InvalidInput("return series must cover the same dates (equal lengths)")
    rows = np.vstack([as_returns(returns[name]) for name in names])
    return np.asarray([notionals[name] for name in names], dtype=np.float64) @ rows


def portfolio_var(returns: Mapping[str, Sequence[float] | np.ndarray], notionals: Mapping[str, float],
                  level: float = 0.99) -> tuple[float, float]:
    """(VaR, CVaR) in USD of a portfolio's daily P&L at ``level`` (historical, same conventions as above)."""
    return historical_var_cvar(portfolio_returns(returns, notionals), level)
