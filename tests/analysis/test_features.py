"""The feature set equals TA-Lib's own functions on real data; VWAP and realised volatility equal numpy written here."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import talib
from pydantic import ValidationError

from mikey.analysis import features, ohlcv
from mikey.analysis.features import FeatureConfig
from mikey.errors import DataUnavailable, InvalidInput
from mikey.market.replay import bundled_data_dir

MARKETS = ["SOL", "BTC", "ETH"]
DEFAULT_COLUMNS = ["rsi_14", "macd", "macd_signal", "macd_hist", "bb_upper", "bb_middle", "bb_lower", "atr_14",
                   "ema_20", "sma_50", "adx_14", "obv", "vwap_20", "stoch_k", "stoch_d", "realized_vol_30"]


@pytest.fixture(scope="module")
def frames() -> dict[str, pd.DataFrame]:
    return {s: ohlcv.validate_ohlcv(ohlcv.load_ohlcv_csv(bundled_data_dir() / f"{s}-USD.daily.csv")).frame
            for s in MARKETS}


def talib_reference(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Every indicator TA-Lib has, from its own functions with the default periods."""
    h, lo, c, v = (frame[n].to_numpy() for n in ("high", "low", "close", "volume"))
    macd, signal, hist = talib.MACD(c, fastperiod=12, slowperiod=26, signalperiod=9)
    upper, middle, lower = talib.BBANDS(c, timeperiod=20, nbdevup=2, nbdevdn=2, matype=0)
    slow_k, slow_d = talib.STOCH(h, lo, c, fastk_period=14, slowk_period=3, slowk_matype=0, slowd_period=3,
                                 slowd_matype=0)
    return {
        "rsi_14": talib.RSI(c, 14), "macd": macd, "macd_signal": signal, "macd_hist": hist,
        "bb_upper": upper, "bb_middle": middle, "bb_lower": lower, "atr_14": talib.ATR(h, lo, c, 14),
        "ema_20": talib.EMA(c, 20), "sma_50": talib.SMA(c, 50), "adx_14": talib.ADX(h, lo, c, 14),
        "obv": talib.OBV(c, v), "stoch_k": slow_k, "stoch_d": slow_d,
    }


def numpy_vwap(frame: pd.DataFrame, length: int) -> np.ndarray:
    """Rolling VWAP of the typical price, one window at a time."""
    tp = ((frame["high"] + frame["low"] + frame["close"]) / 3).to_numpy()
    v = frame["volume"].to_numpy()
    out = np.full(len(frame), np.nan)
    for end in range(length, len(frame) + 1):
        w = slice(end - length, end)
        if v[w].sum() > 0:
            out[end - 1] = (tp[w] * v[w]).sum() / v[w].sum()
    return out


def numpy_realized_vol(close: np.ndarray, length: int, per_year: float) -> np.ndarray:
    """Sample std (ddof=1) of the last ``length`` log returns, annualised."""
    returns = np.diff(np.log(close))
    out = np.full(len(close), np.nan)
    for end in range(length, len(returns) + 1):
        out[end] = returns[end - length:end].std(ddof=1) * math.sqrt(per_year)
    return out


@pytest.mark.parametrize("symbol", MARKETS)
def test_equals_talib_after_warm_up(frames: dict[str, pd.DataFrame], symbol: str) -> None:
    """Every indicator TA-Lib has equals its function to 1e-6, and is NaN exactly where TA-Lib's is."""
    frame = frames[symbol]
    computed = features.compute_features(frame)

    assert list(computed.columns) == DEFAULT_COLUMNS
    assert computed.index.equals(frame.index)
    for name, expected in talib_reference(frame).items():
        actual = computed[name].to_numpy()
        np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected), err_msg=f"{name}: warm-up differs")
        warm = ~np.isnan(expected)
        np.testing.assert_allclose(actual[warm], expected[warm], rtol=0, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("symbol", MARKETS)
def test_vwap_and_realized_vol_equal_numpy(frames: dict[str, pd.DataFrame], symbol: str) -> None:
    frame = frames[symbol]
    computed = features.compute_features(frame)

    vwap = numpy_vwap(frame, 20)
    vol = numpy_realized_vol(frame["close"].to_numpy(), 30, 365)
    np.testing.assert_array_equal(np.isnan(computed["vwap_20"]), np.isnan(vwap))
    np.testing.assert_allclose(computed["vwap_20"], vwap, rtol=1e-9)
    np.testing.assert_array_equal(np.isnan(computed["realized_vol_30"]), np.isnan(vol))
    np.testing.assert_allclose(computed["realized_vol_30"], vol, rtol=1e-9)


def test_independent_checks_of_the_conventions(frames: dict[str, pd.DataFrame]) -> None:
    """Not trusting TA-Lib: Bollinger uses the population std, SMA a plain mean, OBV adds or subtracts volume."""
    frame = frames["SOL"]
    computed = features.compute_features(frame)
    close, volume = frame["close"].to_numpy(), frame["volume"].to_numpy()

    last20 = close[-20:]
    assert computed["bb_middle"].iloc[-1] == pytest.approx(last20.mean(), rel=1e-12)
    assert computed["bb_upper"].iloc[-1] == pytest.approx(last20.mean() + 2 * last20.std(ddof=0), rel=1e-9)
    assert computed["sma_50"].iloc[-1] == pytest.approx(close[-50:].mean(), rel=1e-12)
    obv = volume[0] + np.cumsum(np.sign(np.diff(close)) * volume[1:])
    np.testing.assert_allclose(computed["obv"].to_numpy()[1:], obv, rtol=1e-12)


def test_warmup_is_where_values_start(frames: dict[str, pd.DataFrame]) -> None:
    """``warmup()`` is exactly the bar count at which each column's first value appears."""
    config = FeatureConfig()
    computed = features.compute_features(frames["BTC"], config)

    first = {name: int(np.argmax(np.isfinite(computed[name].to_numpy()))) + 1 for name in computed.columns}

    assert first == config.warmup()
    assert config.warmup()["macd"] == 34 and config.warmup()["adx_14"] == 28 and config.warmup()["sma_50"] == 50


def test_names_follow_the_periods(frames: dict[str, pd.DataFrame]) -> None:
    config = FeatureConfig(rsi_length=7, atr_length=10, ema_length=9, sma_length=100, adx_length=20, vwap_length=5,
                           vol_length=10, vol_annualization=252)
    frame = frames["ETH"]
    computed = features.compute_features(frame, config)
    c = frame["close"].to_numpy()

    assert {"rsi_7", "atr_10", "ema_9", "sma_100", "adx_20", "vwap_5", "realized_vol_10"} <= set(computed.columns)
    assert list(computed.columns) == config.columns()
    np.testing.assert_allclose(computed["rsi_7"], talib.RSI(c, 7), equal_nan=True, atol=1e-9)
    np.testing.assert_allclose(computed["sma_100"], talib.SMA(c, 100), equal_nan=True, atol=1e-9)
    np.testing.assert_allclose(computed["realized_vol_10"], numpy_realized_vol(c, 10, 252), equal_nan=True, rtol=1e-9)


def test_indicator_subset(frames: dict[str, pd.DataFrame]) -> None:
    config = FeatureConfig(indicators=("obv", "rsi"))

    computed = features.compute_features(frames["SOL"], config)

    assert list(computed.columns) == ["rsi_14", "obv"]  # always in the canonical order


@pytest.mark.parametrize("bad", [{"macd_fast": 26}, {"indicators": ("rsi", "ichimoku")}, {"rsi_length": 1},
                                 {"bb_std": 0}, {"color": "red"}])
def test_config_rejects_nonsense(bad: dict) -> None:
    with pytest.raises(ValidationError):
        FeatureConfig(**bad)


def test_last_values_are_the_finite_last_row(frames: dict[str, pd.DataFrame]) -> None:
    computed = features.compute_features(frames["SOL"])

    values = features.last_values(computed)

    assert list(values) == DEFAULT_COLUMNS
    assert values == {name: float(v) for name, v in computed.iloc[-1].items()}
    assert all(math.isfinite(v) for v in values.values())
    assert values["rsi_14"] == pytest.approx(47.8606359, abs=1e-6)  # the value the chat's snapshot pins


@pytest.mark.parametrize(("bars", "named", "not_named"), [
    (40, ["sma_50 is not warmed up (40 bars; it needs at least 50)"], ["rsi_14", "macd ", "realized_vol_30"]),
    (30, ["macd is not warmed up", "realized_vol_30 is not warmed up (30 bars; it needs at least 31)"], ["atr_14"]),
    (10, ["rsi_14 is not warmed up", "stoch_k", "adx_14"], ["obv"]),
])
def test_last_values_name_what_is_not_warmed_up(frames: dict[str, pd.DataFrame], bars: int, named: list[str],
                                                not_named: list[str]) -> None:
    config = FeatureConfig()
    computed = features.compute_features(frames["SOL"].iloc[:bars], config)

    with pytest.raises(DataUnavailable) as caught:
        features.last_values(computed, config)

    for text in named:
        assert text in str(caught.value)
    for text in not_named:
        assert text not in str(caught.value)


def test_last_values_of_nothing() -> None:
    with pytest.raises(DataUnavailable, match="no bars"):
        features.last_values(features.compute_features(ohlcv.frame_from_candles([])))


def test_zero_volume(frames: dict[str, pd.DataFrame]) -> None:
    """Zero-volume bars carry no VWAP weight and leave OBV flat; a window with no volume has no VWAP at all."""
    frame = frames["BTC"].copy()
    frame.loc[frame.index[-25:], "volume"] = 0.0
    frame.loc[frame.index[-30:-25], "volume"] = 1e12  # huge bars right before: a running sum would keep residue
    config = FeatureConfig()
    computed = features.compute_features(frame, config)

    assert np.isnan(computed["vwap_20"].iloc[-1])
    assert np.isfinite(computed["vwap_20"].iloc[-21])  # the window still holding a traded bar
    assert computed["obv"].iloc[-25:].nunique() == 1
    with pytest.raises(DataUnavailable, match=r"vwap_20 is undefined there \(no volume in its window\)$"):
        features.last_values(computed, config)

    partly = frames["BTC"].copy()
    partly.loc[partly.index[-3:], "volume"] = 0.0
    vwap = features.compute_features(partly)["vwap_20"].to_numpy()
    np.testing.assert_allclose(vwap, numpy_vwap(partly, 20), rtol=1e-9)


@pytest.mark.parametrize("damage", ["nan", "inf", "unsorted", "duplicated"])
def test_compute_refuses_unvalidated_bars(frames: dict[str, pd.DataFrame], damage: str) -> None:
    """TA-Lib would turn these into wrong numbers (its RSI makes a NaN close 0.0), so they never reach it."""
    frame = frames["SOL"].iloc[:60].copy()
    if damage in {"nan", "inf"}:
        frame.iloc[30, 3] = np.nan if damage == "nan" else np.inf
    elif damage == "unsorted":
        frame = frame.iloc[::-1]
    else:
        frame = pd.concat([frame, frame.iloc[[-1]]])

    with pytest.raises(InvalidInput, match="validate_ohlcv"):
        features.compute_features(frame)


def test_constant_prices_give_finite_numbers() -> None:
    """A market that does not move is not an error: volatility is 0, not NaN."""
    index = pd.date_range("2024-01-01", periods=60, freq="D", tz="UTC")
    flat = pd.DataFrame({"open": 5.0, "high": 5.0, "low": 5.0, "close": 5.0, "volume": 10.0}, index=index)

    values = features.last_values(features.compute_features(flat))

    assert values["realized_vol_30"] == 0.0
    assert values["vwap_20"] == pytest.approx(5.0)
