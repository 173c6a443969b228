"""Backtest: metrics equal an independent hand computation (plain loops), costs take exactly what they should, and
no position ever uses a price it could not have seen."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest

from mikey.analysis import backtest, signals
from mikey.errors import DataUnavailable, InvalidInput
from tests.fakes.talib_reference import talib_columns, talib_features

START = datetime(2023, 1, 1, tzinfo=UTC)


def series(values: list[float], freq: str = "D") -> pd.Series:
    return pd.Series(values, index=pd.date_range(START, periods=len(values), freq=freq), dtype=float)


def reference(close: list[float], positions: list[int], fee_bps: float, slippage_bps: float, ppy: float) -> dict:
    """The metrics written out bar by bar, sharing no code with the module: position t is held from close t to t+1."""
    c = (fee_bps + slippage_bps) / 10_000
    equity, returns, trades = [1.0], [], []
    prev, trade = 0, None
    for t in range(1, len(close)):
        held, move = positions[t - 1], close[t] / close[t - 1] - 1
        factor = (1 - c) ** abs(held - prev) * (1 + held * move)
        returns.append(factor - 1)
        equity.append(equity[-1] * factor)
        if held != prev:
            if prev != 0:
                trades.append(trade * (1 - c) ** abs(prev) - 1)
            trade = (1 - c) ** abs(held) if held != 0 else None
        if held != 0:
            trade *= 1 + held * move
        prev = held
    if prev != 0:
        trades.append(trade - 1)
    n = len(returns)
    mean = sum(returns) / n
    std = math.sqrt(sum((r - mean) ** 2 for r in returns) / (n - 1))
    downside = math.sqrt(sum(min(r, 0.0) ** 2 for r in returns) / n)
    years = (len(close) - 1) / ppy

    def drawdown(path: list[float]) -> float:
        peak, worst = path[0], 0.0
        for x in path:
            peak = max(peak, x)
            worst = min(worst, x / peak - 1)
        return worst

    total, hold = equity[-1] - 1, close[-1] / close[0] - 1
    return {
        "bars": len(close), "trades": len(trades), "total_return": total,
        "cagr": (1 + total) ** (1 / years) - 1 if total > -1 else -1.0,
        "sharpe": mean / std * math.sqrt(ppy) if std else 0.0,
        "sortino": mean / downside * math.sqrt(ppy) if downside else 0.0,
        "max_drawdown": drawdown(equity),
        "hit_rate": sum(r > 0 for r in trades) / len(trades) if trades else 0.0,
        "exposure": sum(p != 0 for p in positions[:-1]) / n,
        "buy_and_hold_return": hold, "buy_and_hold_cagr": (1 + hold) ** (1 / years) - 1,
        "buy_and_hold_max_drawdown": drawdown(close),
    }


def assert_matches(result, expected: dict) -> None:
    for name, value in expected.items():
        assert getattr(result, name) == pytest.approx(value, rel=1e-9, abs=1e-12), name


CLOSE = [100.0, 110.0, 99.0, 105.0, 120.0, 108.0]
POSITIONS = [0, 0, 1, 0, 1, 0]  # long during bar 3 (99 -> 105) and bar 5 (120 -> 108), which is open at the end


def test_small_series_exact_values() -> None:
    """Worked by hand: held = [0, 0, 0, 1, 0, 1]; 3 units traded (in at 2, out at 3, in at 4); cost 15 bps a unit."""
    c = 0.0015
    result = backtest.backtest(series(CLOSE), series(POSITIONS), fee_bps=10, slippage_bps=5)
    assert result.bars == 6 and result.trades == 2 and result.exposure == pytest.approx(2 / 5)
    assert result.total_return == pytest.approx((1 - c) ** 3 * (105 / 99) * (108 / 120) - 1, rel=1e-12)
    assert result.hit_rate == 0.5  # +6.06% net of 2 units of cost; -10% (open, 1 unit)
    # from the peak after bar 3, then the exit, the re-entry and the -10% bar
    assert result.max_drawdown == pytest.approx((1 - c) ** 2 * 0.9 - 1, rel=1e-12)
    assert result.buy_and_hold_return == pytest.approx(0.08, rel=1e-12)
    assert result.buy_and_hold_max_drawdown == pytest.approx(-0.1, rel=1e-12)
    years = 5 / 365
    assert result.cagr == pytest.approx((1 + result.total_return) ** (1 / years) - 1, rel=1e-12)
    s = np.array([0, 0, (1 - c) * 105 / 99 - 1, (1 - c) - 1, (1 - c) * 0.9 - 1])
    assert result.sharpe == pytest.approx(s.mean() / s.std(ddof=1) * np.sqrt(365), rel=1e-12)
    assert result.sortino == pytest.approx(s.mean() / np.sqrt(np.mean(np.minimum(s, 0) ** 2)) * np.sqrt(365))
    assert_matches(result, reference(CLOSE, POSITIONS, 10, 5, 365))
    assert result.start == START and result.end == datetime(2023, 1, 6, tzinfo=UTC)


def test_shorts_and_flips_match_the_hand_computation() -> None:
    positions = [1, -1, -1, 0, -1, 1]  # the flip after bar 1 trades 2 units; the last +1 is never held
    result = backtest.backtest(series(CLOSE), series(positions), fee_bps=4, slippage_bps=3)
    assert_matches(result, reference(CLOSE, positions, 4, 3, 365))
    assert result.trades == 3


@pytest.fixture(scope="module")
def sol() -> pd.DataFrame:
    return talib_features("SOL")


@pytest.mark.parametrize("allow_short", [False, True])
def test_signal_backtest_on_sol_matches_the_hand_computation(sol: pd.DataFrame, allow_short: bool) -> None:
    positions = signals.actions(signals.score_series(sol), allow_short=allow_short)
    result = backtest.backtest_signals(sol, allow_short=allow_short)
    assert_matches(result, reference(sol["close"].tolist(), positions.tolist(), 10, 5, 365))
    assert result.trades >= 5 and 0 < result.exposure < 1
    assert result.buy_and_hold_return == sol["close"].iloc[-1] / sol["close"].iloc[0] - 1


def test_costs_lower_returns_by_exactly_the_traded_units(sol: pd.DataFrame) -> None:
    positions = signals.actions(signals.score_series(sol), allow_short=True)
    held = positions.shift(1, fill_value=0)
    units = int(held.diff().fillna(held).abs().sum())
    free = backtest.backtest(sol["close"], positions, fee_bps=0, slippage_bps=0)
    paid = backtest.backtest(sol["close"], positions, fee_bps=10, slippage_bps=5)
    assert units > 5 and paid.total_return < free.total_return
    assert 1 + paid.total_return == pytest.approx((1 + free.total_return) * (1 - 0.0015) ** units, rel=1e-12)
    swapped = backtest.backtest(sol["close"], positions, fee_bps=5, slippage_bps=10)
    assert swapped.total_return == pytest.approx(paid.total_return, rel=1e-12)
    assert (paid.fee_bps, paid.slippage_bps) == (10, 5)


def test_always_long_is_buy_and_hold_less_one_entry(sol: pd.DataFrame) -> None:
    close = sol["close"]
    result = backtest.backtest(close, close * 0 + 1, fee_bps=10, slippage_bps=5)
    assert result.buy_and_hold_return == pytest.approx(close.iloc[-1] / close.iloc[0] - 1, rel=1e-12)
    assert result.total_return == pytest.approx((1 - 0.0015) * close.iloc[-1] / close.iloc[0] - 1, rel=1e-12)
    free = backtest.backtest(close, close * 0 + 1, fee_bps=0, slippage_bps=0)
    assert free.total_return == pytest.approx(free.buy_and_hold_return, rel=1e-12)
    assert free.max_drawdown == pytest.approx(free.buy_and_hold_max_drawdown, rel=1e-12)
    assert free.cagr == pytest.approx(free.buy_and_hold_cagr, rel=1e-12)
    assert free.exposure == 1.0 and free.trades == 1 and free.hit_rate == 1.0


def test_flat_has_no_risk_and_no_nan() -> None:
    result = backtest.backtest(series(CLOSE), series([0] * 6))
    assert (result.total_return, result.sharpe, result.sortino, result.max_drawdown) == (0, 0, 0, 0)
    assert (result.trades, result.hit_rate, result.exposure) == (0, 0, 0)
    assert "NaN" not in result.model_dump_json() and "Infinity" not in result.model_dump_json()


def test_no_look_ahead_prices_after_t_do_not_move_anything_up_to_t(sol: pd.DataFrame) -> None:
    """Rewrite every price after bar t: positions up to t, and equity up to t, must stay exactly as they were."""
    t = 600
    ohlcv = sol[["open", "high", "low", "close", "volume"]]
    altered = ohlcv.copy()
    rng = np.random.default_rng(5)
    altered.iloc[t + 1:] = ohlcv.iloc[t + 1:].to_numpy() * rng.uniform(0.5, 1.5, (len(ohlcv) - t - 1, 1))
    runs = []
    for frame in (ohlcv, altered):
        features = talib_columns(frame)
        positions = signals.actions(signals.score_series(features))
        runs.append((positions, backtest.equity_curve(features["close"], positions)))
    (pos_a, curve_a), (pos_b, curve_b) = runs
    pd.testing.assert_series_equal(pos_a.iloc[: t + 1], pos_b.iloc[: t + 1])
    pd.testing.assert_frame_equal(curve_a.iloc[: t + 1], curve_b.iloc[: t + 1])
    assert not pos_a.iloc[t + 1:].equals(pos_b.iloc[t + 1:])  # the change was real


def test_no_look_ahead_a_position_earns_only_the_next_bar(sol: pd.DataFrame) -> None:
    """An oracle that knows bar t+1 when deciding at t earns every move; the same calls one bar late do not; and
    signals shifted from the future change the result."""
    close = sol["close"]
    move = close.pct_change()
    oracle = np.sign(move.shift(-1)).fillna(0).astype(int)  # peeks: decided at t from close t+1
    perfect = backtest.backtest(close, oracle, fee_bps=0, slippage_bps=0)
    assert 1 + perfect.total_return == pytest.approx(float(np.prod(1 + move.abs().iloc[1:])), rel=1e-9)
    honest = backtest.backtest(close, np.sign(move).fillna(0).astype(int), fee_bps=0, slippage_bps=0)
    assert honest.total_return < perfect.total_return / 1000
    positions = signals.actions(signals.score_series(sol))
    base = backtest.backtest(close, positions)
    future = backtest.backtest(close, positions.shift(-1, fill_value=0))
    assert future.total_return != pytest.approx(base.total_return)
    last_changed = positions.copy()
    last_changed.iloc[-1] = 1 - last_changed.iloc[-1]  # the last bar's decision has no bar left to be held in
    assert backtest.backtest(close, last_changed) == base


@pytest.mark.parametrize(
    ("freq", "expected"),
    [("D", 365.0), ("B", 252.0), ("h", 8760.0), ("W-MON", 365 / 7)],
)
def test_bars_per_year(freq: str, expected: float) -> None:
    assert backtest.bars_per_year(pd.date_range(START, periods=60, freq=freq)) == pytest.approx(expected)


def test_weekday_daily_bars_annualise_with_252() -> None:
    close = series(CLOSE, freq="B")
    result = backtest.backtest(close, close * 0 + 1, fee_bps=0, slippage_bps=0)
    assert result.cagr == pytest.approx(1.08 ** (252 / 5) - 1, rel=1e-12)
    assert_matches(result, reference(CLOSE, [1] * 6, 0, 0, 252))


@pytest.mark.parametrize(
    ("close", "positions", "kwargs", "error", "message"),
    [
        (series([100.0, 101.0]), series([0, 1]), {}, DataUnavailable, "at least 3 bars"),
        (series(CLOSE), series(POSITIONS, freq="h"), {}, InvalidInput, "same bars"),
        (series(CLOSE), series([0, 0.5, 1, 0, 1, 0]), {}, InvalidInput, r"\+1 \(long\)"),
        (series([100, np.nan, 99, 105, 120, 108]), series(POSITIONS), {}, InvalidInput, "finite and positive"),
        (series([100, 0, 99, 105, 120, 108]), series(POSITIONS), {}, InvalidInput, "finite and positive"),
        (series(CLOSE), series(POSITIONS), {"fee_bps": -1}, InvalidInput, "fee_bps"),
        (series(CLOSE), series(POSITIONS), {"periods_per_year": 0}, InvalidInput, "periods_per_year"),
        (series(CLOSE).iloc[::-1], series(POSITIONS).iloc[::-1], {}, InvalidInput, "time order"),
        (series(CLOSE, freq="h").iloc[:4].set_axis(pd.date_range("2023-01-02", periods=4, freq="h")),
         series(POSITIONS[:4]).set_axis(pd.date_range("2023-01-02", periods=4, freq="h")), {}, InvalidInput,
         "periods_per_year"),
    ],
)
def test_bad_input_is_a_clear_error(close, positions, kwargs, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        backtest.backtest(close, positions, **kwargs)


def test_signal_backtest_needs_the_close(sol: pd.DataFrame) -> None:
    with pytest.raises(InvalidInput, match="close column"):
        backtest.backtest_signals(sol.drop(columns="close"), weights={"rsi": 1.0})
