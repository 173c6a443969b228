"""Indicators must be TA-Lib's numbers: the same values, the same warm-up, and no NaN ever reaching a snapshot."""

from __future__ import annotations

import math
from decimal import Decimal

import numpy as np
import pytest
import talib

from mikey.analysis import indicators
from mikey.domain import Candle
from mikey.errors import DataUnavailable
from mikey.market.replay import ReplayFeed

MARKETS = ["SOL", "BTC", "ETH"]
COLUMNS = ["rsi_14", "macd", "macd_signal", "macd_hist", "bb_upper", "bb_middle", "bb_lower", "atr_14"]


@pytest.fixture(scope="module")
def feed() -> ReplayFeed:
    return ReplayFeed()


def talib_reference(candles: list[Candle]) -> dict[str, np.ndarray]:
    """The indicator set computed by TA-Lib's own functions, keyed like ``indicators.compute`` columns."""
    close = np.array([float(c.close) for c in candles])
    high = np.array([float(c.high) for c in candles])
    low = np.array([float(c.low) for c in candles])
    macd, signal, hist = talib.MACD(close, 12, 26, 9)
    upper, middle, lower = talib.BBANDS(close, 20, 2, 2)
    return {
        "rsi_14": talib.RSI(close, 14),
        "macd": macd,
        "macd_signal": signal,
        "macd_hist": hist,
        "bb_upper": upper,
        "bb_middle": middle,
        "bb_lower": lower,
        "atr_14": talib.ATR(high, low, close, 14),
    }


def wilder_rsi(closes: list[float], length: int = 14) -> float:
    """Wilder's RSI of the last bar, written out by hand: seed with simple means, then (prev * 13 + x) / 14."""
    changes = [b - a for a, b in zip(closes, closes[1:], strict=False)]
    gains = [max(d, 0.0) for d in changes]
    losses = [max(-d, 0.0) for d in changes]
    avg_gain = sum(gains[:length]) / length
    avg_loss = sum(losses[:length]) / length
    for gain, loss in zip(gains[length:], losses[length:], strict=True):
        avg_gain = (avg_gain * (length - 1) + gain) / length
        avg_loss = (avg_loss * (length - 1) + loss) / length
    return 100.0 * avg_gain / (avg_gain + avg_loss)


@pytest.mark.parametrize("symbol", MARKETS)
def test_compute_equals_talib(feed: ReplayFeed, symbol: str) -> None:
    """Every column equals TA-Lib to 1e-6 after warm-up, and is NaN exactly where TA-Lib's is."""
    candles = feed.candles(symbol)
    frame = indicators.compute(indicators.candles_frame(candles))
    reference = talib_reference(candles)

    assert list(frame.columns) == list(reference) == COLUMNS
    assert len(frame) == len(candles)
    for name, expected in reference.items():
        actual = frame[name].to_numpy(dtype=float)
        np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected), err_msg=f"{name}: NaN warm-up differs")
        assert np.isnan(expected).sum() > 0, f"{name}: expected a warm-up"
        warm = ~np.isnan(expected)
        np.testing.assert_allclose(actual[warm], expected[warm], rtol=0, atol=1e-6, err_msg=name)


def test_warm_up_lengths_follow_talib(feed: ReplayFeed) -> None:
    """The first value of each indicator appears at TA-Lib's lookback: RSI 14, MACD signal 33, BB 19, ATR 14."""
    frame = indicators.compute(indicators.candles_frame(feed.candles("SOL")))

    first = {name: int(np.argmax(~np.isnan(frame[name].to_numpy(dtype=float)))) for name in frame.columns}

    assert first == {
        "rsi_14": 14, "macd": 33, "macd_signal": 33, "macd_hist": 33,
        "bb_upper": 19, "bb_middle": 19, "bb_lower": 19, "atr_14": 14,
    }


@pytest.mark.parametrize("symbol", MARKETS)
def test_snapshot_is_the_last_row(feed: ReplayFeed, symbol: str) -> None:
    """The snapshot a chat answer uses is exactly the last computed row, stamped with the last bar."""
    candles = feed.candles(symbol)
    last = indicators.compute(indicators.candles_frame(candles)).iloc[-1]

    snap = indicators.snapshot(candles)

    assert snap.symbol == symbol
    assert snap.as_of == candles[-1].ts
    assert snap.bars == len(candles) == 971
    assert {name: getattr(snap, name) for name in last.index} == {name: float(v) for name, v in last.items()}


def test_sol_snapshot_values(feed: ReplayFeed) -> None:
    """Pinned values for SOL on 2023-08-29, so a change of library or parameters cannot pass silently."""
    snap = indicators.snapshot(feed.candles("SOL"))

    assert snap.rsi_14 == pytest.approx(47.8606359, abs=1e-6)
    assert snap.macd == pytest.approx(-0.7230668, abs=1e-6)
    assert snap.macd_signal == pytest.approx(-0.6479498, abs=1e-6)
    assert snap.bb_middle == pytest.approx(22.2591997, abs=1e-6)
    assert snap.atr_14 == pytest.approx(1.0961556, abs=1e-6)


@pytest.mark.parametrize("symbol", MARKETS)
def test_rsi_matches_hand_written_wilder(feed: ReplayFeed, symbol: str) -> None:
    """An independent check that does not trust TA-Lib: plain-Python Wilder RSI over the same closes."""
    candles = feed.candles(symbol)

    expected = wilder_rsi([float(c.close) for c in candles])

    assert indicators.snapshot(candles).rsi_14 == pytest.approx(expected, abs=1e-9)


def test_too_few_bars_names_the_minimum(feed: ReplayFeed) -> None:
    """With fewer bars than MACD's warm-up the snapshot refuses, and says how many it needs."""
    assert indicators.MIN_BARS == 34

    with pytest.raises(DataUnavailable, match="at least 34 daily bars; got 20"):
        indicators.snapshot(feed.candles("SOL")[:20])
    with pytest.raises(DataUnavailable, match="got 33"):
        indicators.snapshot(feed.candles("SOL")[:33])


def test_minimum_bars_give_finite_values(feed: ReplayFeed) -> None:
    """Exactly MIN_BARS bars is enough: every value is finite on the last bar."""
    snap = indicators.snapshot(feed.candles("SOL")[: indicators.MIN_BARS])

    assert snap.bars == 34
    values = {name: getattr(snap, name) for name in COLUMNS}
    assert all(math.isfinite(v) for v in values.values()), values


@pytest.mark.parametrize("position", [-1, -3, -25])
def test_nan_close_is_unavailable_not_nan(feed: ReplayFeed, position: int) -> None:
    """A hole in recent data must surface as DataUnavailable, never as a NaN number in an answer.

    (TA-Lib's RSI turns 0.0, not NaN, after a NaN close, so the input itself is refused before any indicator runs.)
    """
    candles = list(feed.candles("SOL"))
    candles[position] = candles[position].model_copy(update={"close": Decimal("NaN")})

    with pytest.raises(DataUnavailable, match=r"^SOL candles hold non-finite values"):
        indicators.snapshot(candles)
