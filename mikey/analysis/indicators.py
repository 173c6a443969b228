"""The standard indicator set of a chat answer (RSI, MACD, Bollinger Bands, ATR), as an ``IndicatorSnapshot``.

The numbers come from ``features.compute_features`` with the standard periods, so they follow TA-Lib's conventions:
RSI and ATR use Wilder smoothing, Bollinger Bands the population standard deviation, MACD exponential averages
seeded with a simple mean (the tests compare against TA-Lib's own functions). pandas is imported lazily: it is heavy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from mikey.analysis.features import FeatureConfig, compute_features
from mikey.analysis.ohlcv import frame_from_candles
from mikey.domain import Candle, IndicatorSnapshot
from mikey.errors import DataUnavailable

if TYPE_CHECKING:
    import pandas as pd

RSI_LENGTH = 14
MACD_FAST, MACD_SLOW, MACD_SIGNAL = 12, 26, 9
BB_LENGTH, BB_STD = 20, 2.0
ATR_LENGTH = 14

PARAMETERS: dict[str, float] = {
    "rsi_length": RSI_LENGTH,
    "macd_fast": MACD_FAST,
    "macd_slow": MACD_SLOW,
    "macd_signal": MACD_SIGNAL,
    "bb_length": BB_LENGTH,
    "bb_std": BB_STD,
    "atr_length": ATR_LENGTH,
}

# TA-Lib's MACD needs slow + signal - 1 bars before its first value; it is the longest warm-up of the set.
MIN_BARS = MACD_SLOW + MACD_SIGNAL - 1


STANDARD = FeatureConfig(
    indicators=("rsi", "macd", "bbands", "atr"), rsi_length=RSI_LENGTH, macd_fast=MACD_FAST, macd_slow=MACD_SLOW,
    macd_signal=MACD_SIGNAL, bb_length=BB_LENGTH, bb_std=BB_STD, atr_length=ATR_LENGTH,
)


def candles_frame(candles: Sequence[Candle]) -> pd.DataFrame:
    """OHLCV as a float64 DataFrame indexed by timestamp (``ohlcv.frame_from_candles``)."""
    return frame_from_candles(candles)


def compute(frame: pd.DataFrame) -> pd.DataFrame:
    """Indicator columns (rsi_14, macd, macd_signal, macd_hist, bb_upper, bb_middle, bb_lower, atr_14) for each bar.

    Rows before an indicator's warm-up are NaN, as in TA-Lib.
    """
    return compute_features(frame, STANDARD)


def _pandas_ta():
    import warnings

    # pandas-ta-classic 0.8.32 stamps a creation time with Timestamp.dayofyear at import, which pandas 3.1 deprecates
    # (Pandas4Warning). It is harmless and not ours to fix; silence exactly that warning, once, at import.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Timestamp.dayofyear is deprecated")
        import pandas_ta_classic

    return pandas_ta_classic


def snapshot(candles: Sequence[Candle]) -> IndicatorSnapshot:
    """Last-bar indicator values for ``candles`` (one market, oldest first).

    Raises ``DataUnavailable`` when there are fewer bars than the longest warm-up, or a value is not finite.
    """
    import numpy as np

    if len(candles) < MIN_BARS:
        raise DataUnavailable(f"indicators need at least {MIN_BARS} daily bars; got {len(candles)}")
    frame = candles_frame(candles)
    if not np.isfinite(frame.to_numpy()).all():
        # TA-Lib does not propagate NaN everywhere (its RSI turns a NaN close into 0.0), so refuse such input.
        raise DataUnavailable(f"{candles[-1].symbol} candles hold non-finite values; indicators need clean bars")
    values = compute(frame).iloc[-1]
    bad = [name for name, value in values.items() if not math.isfinite(value)]
    if bad:
        raise DataUnavailable(f"indicator(s) {', '.join(bad)} not finite on the last bar of {candles[-1].symbol}")
    return IndicatorSnapshot(
        symbol=candles[-1].symbol, as_of=candles[-1].ts, bars=len(candles), **{k: float(v) for k, v in values.items()}
    )
