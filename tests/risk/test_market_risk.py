"""Market-risk figures against an independent implementation written here: plain loops, ``statistics`` and numpy's
own ``np.percentile``, on the bundled SOL, BTC and ETH history (real Yahoo daily closes, 2021-01-01 .. 2023-08-29)."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pandas as pd
import pytest

from mikey.domain import MAX_DAILY_RETURN
from mikey.errors import InvalidInput
from mikey.risk import market_risk as mr

LEVELS = (0.95, 0.99)
SIDES = (1, -1)


# --- the independent implementation --------------------------------------------------------------------------------


def loop_returns(closes: list[float]) -> list[float]:
    return [closes[i] / closes[i - 1] - 1.0 for i in range(1, len(closes))]


def reference_var_cvar(returns: list[float], level: float, side: int) -> tuple[float, float]:
    pnl = [side * r for r in returns]
    q = float(np.percentile(pnl, 100 * (1 - level)))  # numpy's default: linear interpolation
    tail = [x for x in pnl if x <= q]
    return -q, -sum(tail) / len(tail)


def reference_ewma(returns: list[float], lam: float = 0.94, seed_bars: int = 20) -> float:
    variance = sum(r * r for r in returns[:seed_bars]) / len(returns[:seed_bars])
    for r in returns:
        variance = lam * variance + (1 - lam) * r * r
    return math.sqrt(variance)


def reference_drawdown(prices: list[float]) -> float:
    peak, worst = prices[0], 0.0
    for p in prices:
        peak = max(peak, p)
        worst = max(worst, 1 - p / peak)
    return worst


def reference_pearson(x: list[float], y: list[float]) -> float:
    mx, my = sum(x) / len(x), sum(y) / len(y)
    cov = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True))
    return cov / math.sqrt(sum((a - mx) ** 2 for a in x) * sum((b - my) ** 2 for b in y))


@pytest.fixture(params=["sol", "btc", "eth"])
def closes(request: pytest.FixtureRequest, sol_all: pd.Series, btc_all: pd.Series, eth_all: pd.Series) -> pd.Series:
    return {"sol": sol_all, "btc": btc_all, "eth": eth_all}[request.param]


# --- returns, VaR, CVaR --------------------------------------------------------------------------------------------


def test_simple_returns_match_a_loop(closes: pd.Series) -> None:
    values = closes.tolist()
    assert mr.simple_returns(closes.to_numpy()).tolist() == pytest.approx(loop_returns(values), rel=1e-15, abs=1e-15)


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("side", SIDES)
def test_historical_var_cvar_match_reference(closes: pd.Series, level: float, side: int) -> None:
    returns = loop_returns(closes.tolist())
    expected_var, expected_cvar = reference_var_cvar(returns, level, side)

    var, cvar = mr.historical_var_cvar(side * np.asarray(returns), level)

    assert var == pytest.approx(expected_var, rel=1e-12)
    assert cvar == pytest.approx(expected_cvar, rel=1e-12)
    assert mr.historical_var(np.asarray(returns), level, side=side) == pytest.approx(expected_var, rel=1e-12)
    assert mr.historical_cvar(np.asarray(returns), level, side=side) == pytest.approx(expected_cvar, rel=1e-12)
    assert cvar >= var  # the mean beyond the quantile is at least as bad as the quantile


def test_var_of_one_year_of_sol_is_what_the_numbers_say(sol_year: pd.Series) -> None:
    """Pinned figures for the last year of SOL (2022-08-30 .. 2023-08-29), so a change of convention shows."""
    returns = mr.simple_returns(sol_year.to_numpy())
    var_99, cvar_99 = mr.historical_var_cvar(returns, 0.99)
    assert len(returns) == 364
    assert var_99 == pytest.approx(-np.percentile(returns, 1))
    assert 0.10 < var_99 < 0.13 and cvar_99 > 0.2  # the FTX collapse (2022-11) is in this window


@pytest.mark.parametrize("n", [2, 3, 7, 100, 365, 1000])
def test_quantile_sorted_is_numpy_linear(n: int) -> None:
    data = np.sort(np.random.default_rng(n).standard_t(3, size=n))
    for q in (0.0, 0.01, 0.05, 0.5, 0.99, 1.0):
        assert mr.quantile_sorted(data, q) == pytest.approx(float(np.quantile(data, q)), rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("side", SIDES)
def test_parametric_var_matches_statistics_module(closes: pd.Series, level: float, side: int) -> None:
    returns = loop_returns(closes.tolist())
    pnl = [side * r for r in returns]
    expected = -(statistics.fmean(pnl) + statistics.NormalDist().inv_cdf(1 - level) * statistics.stdev(pnl))
    assert mr.parametric_var(np.asarray(returns), level, side=side) == pytest.approx(expected, rel=1e-10)
    z = statistics.NormalDist().inv_cdf(1 - level)
    expected_cvar = statistics.stdev(pnl) * statistics.NormalDist().pdf(z) / (1 - level) - statistics.fmean(pnl)
    assert mr.parametric_cvar(np.asarray(returns), level, side=side) == pytest.approx(expected_cvar, rel=1e-10)


# --- volatility ----------------------------------------------------------------------------------------------------


def test_volatility_is_sample_std_times_sqrt_365(closes: pd.Series) -> None:
    returns = loop_returns(closes.tolist())
    expected = statistics.stdev(returns) * math.sqrt(365)
    assert mr.annualized_volatility(np.asarray(returns), 365) == pytest.approx(expected, rel=1e-12)


def test_crypto_history_has_weekends_and_counts_365(closes: pd.Series) -> None:
    assert mr.periods_per_year(closes.index.asi8, unit=closes.index.unit) == 365


def test_weekday_only_history_counts_252(btc_all: pd.Series) -> None:
    weekdays = btc_all[btc_all.index.day_of_week < 5]
    assert mr.periods_per_year(weekdays.index.asi8, unit=weekdays.index.unit) == 252
    assert mr.periods_per_year(None) == 365  # undated returns: crypto
    seconds = weekdays.index.as_unit("s")
    assert mr.periods_per_year(seconds.asi8, unit="s") == 252


def test_ewma_volatility_matches_the_recursion(closes: pd.Series) -> None:
    returns = loop_returns(closes.tolist())
    expected = reference_ewma(returns) * math.sqrt(365)
    assert mr.ewma_volatility(np.asarray(returns), 365) == pytest.approx(expected, rel=1e-10)
    short = returns[:5]
    assert mr.ewma_volatility(np.asarray(short), 252) == pytest.approx(reference_ewma(short) * math.sqrt(252))


def test_ewma_forgets_old_shocks() -> None:
    calm_after_storm = np.r_[np.full(20, 0.2), np.full(200, 0.001)]
    assert mr.ewma_volatility(calm_after_storm, 365) < mr.annualized_volatility(calm_after_storm, 365) / 5


# --- drawdown ------------------------------------------------------------------------------------------------------


def test_max_drawdown_matches_a_loop(closes: pd.Series) -> None:
    prices = closes.tolist()
    assert mr.max_drawdown(np.asarray(prices)) == pytest.approx(reference_drawdown(prices), rel=1e-14)


def test_max_drawdown_simple_paths() -> None:
    assert mr.max_drawdown(np.array([1.0, 2.0, 3.0])) == 0.0
    assert mr.max_drawdown(np.array([100.0, 50.0, 200.0, 150.0])) == pytest.approx(0.5)


def test_max_adverse_move_for_a_short_is_the_largest_rally() -> None:
    path = np.array([100.0, 50.0, 200.0, 150.0])
    assert mr.max_adverse_move(path, 1) == pytest.approx(0.5)
    assert mr.max_adverse_move(path, -1) == pytest.approx(3.0)  # 50 -> 200


def test_price_path_compounds_returns(sol_year: pd.Series) -> None:
    prices = sol_year.to_numpy()
    path = mr.price_path(mr.simple_returns(prices))
    assert path * prices[0] == pytest.approx(prices, rel=1e-12)
    assert mr.max_drawdown(path) == pytest.approx(mr.max_drawdown(prices), rel=1e-12)


# --- portfolio -----------------------------------------------------------------------------------------------------


def test_correlation_matrix_matches_pearson(sol_all: pd.Series, btc_all: pd.Series, eth_all: pd.Series) -> None:
    series = {name: loop_returns(s.tolist()) for name, s in (("SOL", sol_all), ("BTC", btc_all), ("ETH", eth_all))}
    names, matrix = mr.correlation_matrix(series)

    assert names == ["SOL", "BTC", "ETH"]
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            assert matrix[i, j] == pytest.approx(reference_pearson(series[a], series[b]), rel=1e-10)
    assert 0.5 < matrix[0, 1] < 1  # crypto majors move together


def test_correlation_refuses_what_it_cannot_compute() -> None:
    with pytest.raises(InvalidInput, match="at least two"):
        mr.correlation_matrix({"SOL": [0.1, 0.2]})
    with pytest.raises(InvalidInput, match="same dates"):
        mr.correlation_matrix({"SOL": [0.1, 0.2, 0.3], "BTC": [0.1, 0.2]})
    with pytest.raises(InvalidInput, match="constant"):
        mr.correlation_matrix({"SOL": [0.1, 0.1, 0.1], "BTC": [0.1, 0.2, 0.3]})


def test_herfindahl() -> None:
    assert mr.herfindahl([100.0]) == 1.0
    assert mr.herfindahl([100.0, -100.0, 100.0, 100.0]) == pytest.approx(0.25)  # shorts count by size
    assert mr.herfindahl([300.0, 100.0]) == pytest.approx(0.75**2 + 0.25**2)
    with pytest.raises(InvalidInput):
        mr.herfindahl([])
    with pytest.raises(InvalidInput):
        mr.herfindahl([0.0, 0.0])


def test_portfolio_var_matches_reference(sol_all: pd.Series, btc_all: pd.Series) -> None:
    sol, btc = loop_returns(sol_all.tolist()), loop_returns(btc_all.tolist())
    pnl = [10_000 * a - 5_000 * b for a, b in zip(sol, btc, strict=True)]  # long SOL, short BTC, in USD
    q = float(np.percentile(pnl, 1))
    expected = (-q, -statistics.fmean(x for x in pnl if x <= q))

    var, cvar = mr.portfolio_var({"SOL": sol, "BTC": btc}, {"SOL": 10_000.0, "BTC": -5_000.0})

    assert (var, cvar) == pytest.approx(expected, rel=1e-12)
    with pytest.raises(InvalidInput, match="no returns for ETH"):
        mr.portfolio_var({"SOL": sol}, {"ETH": 1.0})


# --- bad input -----------------------------------------------------------------------------------------------------


def test_bad_prices_and_returns_are_refused() -> None:
    with pytest.raises(InvalidInput, match="NaN"):
        mr.simple_returns([1.0, float("nan"), 2.0])
    with pytest.raises(InvalidInput, match="positive"):
        mr.simple_returns([1.0, 0.0, 2.0])
    with pytest.raises(InvalidInput, match="at least 2"):
        mr.as_returns([0.1])
    with pytest.raises(InvalidInput, match="-100%"):
        mr.as_returns([0.1, -1.0])
    with pytest.raises(InvalidInput, match="infinity"):
        mr.as_returns([0.1, float("inf")])


@pytest.mark.parametrize(("returns", "words"), [
    ([1e308, 1e308, -0.5], "at most 10 (+1000%), more than any perpetual market moves in a day; got 1e+308 at "
                           "position 0"),
    ([0.1, 1e200], "at most 10 (+1000%), more than any perpetual market moves in a day; got 1e+200 at position 1"),
    ([100.0] * 158, "at most 10"),
    ([0.1, -1.0, -1.0], "above -1 (-100% leaves no price); got -1 at position 1"),
])
def test_returns_are_bounded_to_a_markets_day(returns, words) -> None:
    """A daily return is a fraction above -1 and at most ``MAX_DAILY_RETURN``: the message names ``returns``."""
    with pytest.raises(InvalidInput, match="^returns: ") as caught:
        mr.as_returns(returns)
    assert words in str(caught.value)


def test_the_bounds_themselves_are_returns() -> None:
    assert list(mr.as_returns([MAX_DAILY_RETURN, -0.999999])) == [MAX_DAILY_RETURN, -0.999999]


@pytest.mark.parametrize("returns", [
    [MAX_DAILY_RETURN] * 365,  # 11^365: overflows to infinity
    [-0.99] * 200,  # 0.01^200: underflows to zero
    [-0.9] * 200 + [9.0] * 350,  # from 1e-200 up to 1e150: every price finite, their ratio is not
])
def test_a_price_path_beyond_float_range_is_refused(returns) -> None:
    with np.errstate(all="raise"):  # and no overflow happens on the way to the refusal
        with pytest.raises(InvalidInput, match="^returns compound to a price path .* beyond floating-point range"):
            mr.price_path(mr.as_returns(returns))


def test_prices_whose_ratio_overflows_are_refused() -> None:
    with pytest.raises(InvalidInput, match="beyond floating-point range"):
        mr.simple_returns([1e-300, 1.0, 1e300])
