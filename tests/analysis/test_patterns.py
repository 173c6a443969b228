"""Patterns on constructed series with known answers, TA-Lib agreeing on candlesticks, and no look-ahead."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
import pytest
import talib
from pydantic import ValidationError

from mikey.analysis import features, ohlcv, patterns
from mikey.analysis.patterns import CANDLESTICKS, PatternConfig
from mikey.domain import PatternFinding
from mikey.errors import DataUnavailable, InvalidInput
from mikey.market.replay import bundled_data_dir

CONFIG = PatternConfig()


def bars(close, *, opens=None, spread: float = 0.3, volume: float = 1000.0) -> pd.DataFrame:
    """OHLCV from closes: open at the previous close unless given, shadows ``spread`` beyond the body."""
    close = np.asarray(close, dtype=float)
    open_ = np.r_[close[:1], close[:-1]] if opens is None else np.asarray(opens, dtype=float)
    index = pd.date_range("2022-01-01", periods=len(close), freq="D", tz="UTC", name="ts")
    return pd.DataFrame({"open": open_, "high": np.maximum(open_, close) + spread,
                         "low": np.minimum(open_, close) - spread, "close": close,
                         "volume": np.full(len(close), volume)}, index=index)


def with_last_candles(base: np.ndarray, candles: list[tuple[float, float, float, float]]) -> pd.DataFrame:
    """``base`` closes, then explicit (open, high, low, close) candles at the end."""
    frame = bars(np.r_[base, [c for *_, c in candles]])
    for offset, (o, h, lo, c) in enumerate(candles, start=len(base)):
        frame.iloc[offset, :4] = [o, h, lo, c]
    return frame


def ts(frame: pd.DataFrame, pos: int) -> datetime:
    return frame.index[pos].to_pydatetime()


@pytest.fixture(scope="module")
def markets() -> dict[str, tuple[pd.DataFrame, pd.DataFrame]]:
    out = {}
    for symbol in ("SOL", "BTC", "ETH"):
        frame = ohlcv.validate_ohlcv(ohlcv.load_ohlcv_csv(bundled_data_dir() / f"{symbol}-USD.daily.csv")).frame
        out[symbol] = (frame, features.compute_features(frame))
    return out


# --- candlesticks ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("candles", "direction", "sign"), [
    ([(101.0, 101.3, 99.7, 100.0), (99.5, 102.3, 99.2, 102.0)], "bullish", 100),  # white body engulfs a black one
    ([(100.0, 101.3, 99.7, 101.0), (101.5, 101.8, 98.7, 99.0)], "bearish", -100),  # and the mirror
])
def test_textbook_engulfing(candles, direction: str, sign: int) -> None:
    frame = with_last_candles(np.linspace(110, 101, 30), candles)
    o, h, lo, c = (frame[n].to_numpy() for n in ("open", "high", "low", "close"))

    assert talib.CDLENGULFING(o, h, lo, c)[-1] == sign  # TA-Lib agrees it is the textbook pattern

    found = [f for f in patterns.candlestick_patterns(frame, CONFIG) if f.name == "CDLENGULFING"]
    assert found == [PatternFinding(kind="candlestick", name="CDLENGULFING", direction=direction, strength=0.8,
                                    start=ts(frame, -2), end=ts(frame, -1), bars=2)]


def test_doji_is_neutral_and_weak() -> None:
    frame = with_last_candles(100 + np.sin(np.arange(30)), [(100.0, 101.5, 98.5, 100.0)])
    o, h, lo, c = (frame[n].to_numpy() for n in ("open", "high", "low", "close"))
    assert talib.CDLDOJI(o, h, lo, c)[-1] == 100

    doji = next(f for f in patterns.candlestick_patterns(frame, CONFIG) if f.name == "CDLDOJI")

    assert doji.direction == "neutral"
    assert doji.strength == pytest.approx(CANDLESTICKS["CDLDOJI"].reliability)


def test_older_candles_are_weaker() -> None:
    """The same engulfing two bars back keeps its direction but fades linearly over the look-back."""
    frame = with_last_candles(np.linspace(110, 101, 30),
                              [(101.0, 101.3, 99.7, 100.0), (99.5, 102.3, 99.2, 102.0), (102.0, 102.9, 101.6, 102.4),
                               (102.4, 103.1, 102.0, 102.8)])

    found = next(f for f in patterns.candlestick_patterns(frame, CONFIG) if f.name == "CDLENGULFING")

    assert (found.end, found.direction) == (ts(frame, -3), "bullish")
    assert found.strength == pytest.approx(0.8 * (1 - 2 / 5))


@pytest.mark.parametrize("symbol", ["SOL", "BTC", "ETH"])
def test_candlesticks_agree_with_talib_on_real_data(markets, symbol: str) -> None:
    frame, _ = markets[symbol]
    o, h, lo, c = (frame[n].to_numpy() for n in ("open", "high", "low", "close"))
    n = len(frame)
    expected = {(name, ts(frame, i), int(np.sign(v)))
                for name in CANDLESTICKS for i, v in enumerate(getattr(talib, name)(o, h, lo, c)) if v and i >= n - 5}

    found = patterns.candlestick_patterns(frame, CONFIG)

    signs = {"bullish": 1, "bearish": -1}
    assert {(f.name, f.end, signs.get(f.direction, 1)) for f in found} == expected
    assert all(f.bars == CANDLESTICKS[f.name].bars for f in found)


def test_unknown_candlestick_is_refused() -> None:
    with pytest.raises(ValidationError, match="CDLNOSUCH"):
        PatternConfig(candlesticks=("CDLENGULFING", "CDLNOSUCH"))


# --- swing points and support/resistance -------------------------------------------------------------------------


def test_swing_points() -> None:
    values = np.array([1, 2, 5, 2, 1, 1, 0, 1, 3, 3, 1, 2, 9])

    assert patterns.swing_points(values, 2, "high").tolist() == [2, 8]  # a flat top counts once, at its first bar
    assert patterns.swing_points(values, 2, "low").tolist() == [6, 10]
    assert patterns.swing_points(values, 2, "high")[-1] <= len(values) - 1 - 2  # the unconfirmed 9 is not a swing


def zigzag(cycles: int = 8, low: float = 100.0, high: float = 120.0, period: int = 20, end: float = 110.0):
    """Closes bouncing between ``low`` and ``high`` (a range with known levels), ending at ``end``."""
    half = period // 2
    leg_up, leg_down = np.linspace(low, high, half + 1)[1:], np.linspace(high, low, half + 1)[1:]
    path = np.r_[low, np.tile(np.r_[leg_up, leg_down], cycles), np.linspace(low, end, 6)[1:]]
    return path


def test_support_and_resistance_at_known_levels() -> None:
    frame = bars(zigzag(), spread=0.3)

    levels = patterns.support_resistance(frame, CONFIG)

    support = [f for f in levels if f.kind == "support"]
    resistance = [f for f in levels if f.kind == "resistance"]
    assert len(support) == 1 and len(resistance) == 1
    assert support[0].level == pytest.approx(100 - 0.3) and resistance[0].level == pytest.approx(120 + 0.3)
    assert (support[0].direction, resistance[0].direction) == ("bullish", "bearish")
    # eight touches each (nine lows with the start), recent: strong
    assert support[0].strength > 0.9 and resistance[0].strength > 0.9
    for level in levels:
        assert level.start < level.end and level.bars > 100


def test_nearby_swings_cluster_and_far_ones_do_not() -> None:
    closes = zigzag(cycles=4) + np.r_[0, np.tile([0.0, 0.6, -0.6, 0.4], 100)][: len(zigzag(cycles=4))]
    frame = bars(np.r_[closes, np.linspace(110, 140, 10), np.linspace(140, 128, 8)])

    levels = patterns.support_resistance(frame, CONFIG)

    prices = sorted(f.level for f in levels)
    assert any(abs(p - 100) < 1.5 for p in prices)  # the wobbling lows are one level, not four
    assert any(abs(p - 120) < 1.5 for p in prices)
    assert any(abs(p - 140.3) < 0.5 for p in prices)  # the new high stands apart
    assert len(prices) == 3


def test_a_broken_level_changes_role() -> None:
    """After price falls through the floor, the old support is resistance."""
    frame = bars(np.r_[zigzag(end=100.0), np.linspace(100, 85, 8)])

    levels = patterns.support_resistance(frame, CONFIG)

    assert {f.kind for f in levels if abs(f.level - 99.7) < 1} == {"resistance"}


# --- regimes -----------------------------------------------------------------------------------------------------


def test_trend_regimes() -> None:
    rng = np.random.default_rng(3)
    steps = rng.normal(0, 0.3, 120)
    up = bars(100 + np.cumsum(steps + 0.8))
    down = bars(200 + np.cumsum(steps - 0.8))
    flat = bars(100 + 2 * np.sin(np.arange(120) / 2))

    regimes = {name: patterns.trend_regime(features.compute_features(f), CONFIG) for name, f in
               [("up", up), ("down", down), ("flat", flat)]}

    assert (regimes["up"].name, regimes["up"].direction) == ("uptrend", "bullish")
    assert (regimes["down"].name, regimes["down"].direction) == ("downtrend", "bearish")
    assert (regimes["flat"].name, regimes["flat"].direction) == ("range", "neutral")
    assert regimes["up"].strength > 0.5 and regimes["up"].bars > 50
    assert regimes["up"].end == ts(up, -1)


def test_volatility_regimes() -> None:
    rng = np.random.default_rng(5)
    calm, wild = rng.normal(0, 0.005, 400), rng.normal(0, 0.06, 400)
    calming = bars(100 * np.exp(np.cumsum(np.r_[wild, calm[:32]])), spread=0.01)
    heating = bars(100 * np.exp(np.cumsum(np.r_[calm, wild[:32]])), spread=0.01)

    low = patterns.volatility_regime(features.compute_features(calming), CONFIG)
    high = patterns.volatility_regime(features.compute_features(heating), CONFIG)

    assert (low.name, low.direction) == ("low volatility", "neutral")
    assert high.name == "high volatility"
    assert low.strength > 0.9 and high.strength > 0.9
    assert low.bars == CONFIG.vol_history


# --- divergences -------------------------------------------------------------------------------------------------


def bearish_divergence_closes() -> np.ndarray:
    """A steep rise to 120 (RSI near 96), a pullback, then a choppy grind to a higher high (RSI near 71)."""
    path = [*np.linspace(100, 95, 40), *np.linspace(96, 120, 10), 117, 114, 112, 111]
    price = 111.0
    for i in range(15):
        price += 2.2 if i % 2 == 0 else -0.8
        path.append(price)
    return np.array([*path, price - 2, price - 4, price - 5])


@pytest.mark.parametrize(("closes", "direction", "column"), [
    (bearish_divergence_closes(), "bearish", "high"),
    (250 - bearish_divergence_closes(), "bullish", "low"),  # the mirror: lower low, higher RSI low
])
def test_rsi_divergence(closes: np.ndarray, direction: str, column: str) -> None:
    frame = bars(closes)
    feats = features.compute_features(frame)
    k = CONFIG.divergence_swing_bars
    p1, p2 = patterns.swing_points(frame[column].to_numpy(), k, column)[-2:]
    rsi, price = feats["rsi_14"].to_numpy(), frame[column].to_numpy()
    further = price[p2] > price[p1] if column == "high" else price[p2] < price[p1]
    weaker = rsi[p2] < rsi[p1] if column == "high" else rsi[p2] > rsi[p1]
    assert further and weaker  # the construction is what it claims to be

    found = patterns.rsi_divergences(frame, feats, CONFIG)

    assert found == [PatternFinding(kind="divergence", name=f"{direction} RSI divergence", direction=direction,
                                    strength=1.0, start=ts(frame, p1), end=ts(frame, p2 + k), bars=p2 + k - p1 + 1)]
    assert found[0].end == ts(frame, -1)  # known on the bar that confirms the swing, and not before:
    assert patterns.rsi_divergences(frame.iloc[:-1], feats.iloc[:-1], CONFIG) == []


def test_no_divergence_when_rsi_confirms() -> None:
    """Higher highs with higher RSI highs are a healthy trend, not a divergence."""
    closes = np.r_[np.linspace(100, 95, 40), np.linspace(95, 105, 10), [103, 102, 101], np.linspace(101, 125, 6),
                   [122, 120, 119]]
    frame = bars(closes)

    assert patterns.rsi_divergences(frame, features.compute_features(frame), CONFIG) == []


# --- find_patterns as a whole ------------------------------------------------------------------------------------


@pytest.mark.parametrize("symbol", ["SOL", "BTC", "ETH"])
def test_find_patterns_on_real_data(markets, symbol: str) -> None:
    frame, feats = markets[symbol]

    found = patterns.find_patterns(frame, feats)

    kinds = [f.kind for f in found]
    assert kinds.count("trend") == 1 and kinds.count("volatility") == 1
    assert {"support", "resistance"} <= set(kinds)
    for f in found:
        assert 0 <= f.strength <= 1 and f.start <= f.end <= ts(frame, -1) and f.bars >= 1
        if f.kind in {"support", "resistance"}:
            assert (f.level <= frame["close"].iloc[-1]) == (f.kind == "support")


@pytest.mark.parametrize("seed", range(4))
def test_strengths_stay_in_range_on_random_walks(seed: int) -> None:
    rng = np.random.default_rng(seed)
    closes = 50 * np.exp(np.cumsum(rng.normal(0, rng.uniform(0.005, 0.08), 400)))
    frame = bars(closes, spread=0.002 * closes.mean())
    feats = features.compute_features(frame)

    for end in range(60, 400, 17):  # the finders run on every prefix: they must never fail or leave [0, 1]
        for f in patterns.find_patterns(frame.iloc[:end], feats.iloc[:end]):
            assert 0 <= f.strength <= 1


def test_patterns_need_enough_bars(markets) -> None:
    frame, feats = markets["SOL"]

    assert CONFIG.min_bars() == 50
    with pytest.raises(DataUnavailable, match="at least 50 bars; got 49"):
        patterns.find_patterns(frame.iloc[:49], feats.iloc[:49])
    assert patterns.find_patterns(frame.iloc[:50], feats.iloc[:50])


def test_frames_must_match(markets) -> None:
    frame, feats = markets["SOL"]

    with pytest.raises(InvalidInput, match="bars differ"):
        patterns.find_patterns(frame.iloc[1:], feats.iloc[:-1])
    with pytest.raises(InvalidInput, match="lack column.*adx_14"):
        patterns.find_patterns(frame, feats.drop(columns=["adx_14"]))
