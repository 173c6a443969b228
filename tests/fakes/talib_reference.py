"""The indicator columns the signals read, computed by TA-Lib directly (not ``features.py``): the reference the signal
and backtest tests compare MIKEY's own features against."""

from __future__ import annotations

from functools import cache

import pandas as pd
import talib

from mikey.analysis.indicators import candles_frame
from mikey.market.replay import ReplayFeed


def talib_columns(ohlcv: pd.DataFrame) -> pd.DataFrame:
    """OHLCV joined with the indicator columns the signals read, computed by TA-Lib directly (not features.py)."""
    close, high, low = (ohlcv[k].to_numpy() for k in ("close", "high", "low"))
    out = ohlcv.copy()
    out["rsi_14"] = talib.RSI(close, 14)
    out["macd"], out["macd_signal"], out["macd_hist"] = talib.MACD(close, 12, 26, 9)
    out["bb_upper"], out["bb_middle"], out["bb_lower"] = talib.BBANDS(close, 20, 2, 2)
    out["atr_14"] = talib.ATR(high, low, close, 14)
    out["ema_20"], out["sma_50"] = talib.EMA(close, 20), talib.SMA(close, 50)
    out["adx_14"] = talib.ADX(high, low, close, 14)
    out["stoch_k"], out["stoch_d"] = talib.STOCH(high, low, close, 14, 3, 0, 3, 0)
    return out


@cache
def _talib_features(symbol: str) -> pd.DataFrame:
    return talib_columns(candles_frame(ReplayFeed().candles(symbol)))


def talib_features(symbol: str) -> pd.DataFrame:
    """The bundled history of ``symbol`` with its TA-Lib indicator columns (a fresh copy; tests may alter it)."""
    return _talib_features(symbol).copy()
