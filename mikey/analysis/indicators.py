"""Standard indicator set with pandas-ta-classic, following TA-Lib's conventions.

RSI and ATR use Wilder smoothing, Bollinger Bands the population standard deviation, MACD exponential averages
seeded with a simple mean, exactly as TA-Lib computes them (pandas-ta-classic hands these to TA-Lib when its wheel is
installed, and the tests compare against TA-Lib's own functions). pandas is imported lazily: it is heavy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

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


def candles_frame(candles: Sequence[Candle]) -> pd.DataFrame:
    """OHLCV as a float64 DataFrame indexed by timestamp."""
    import pandas as pd

    return pd.DataFrame(
        {
            "open": [float(c.open) for c in candles],
            "high": [float(c.high) for c in candles],
            "low": [float(c.low) for c in candles],
            "close": [float(c.close) for c in candles],
            "volume": [float(c.volume) for c in candles],
        },
        index=pd.DatetimeIndex([c.ts for c in candles], name="ts"),
    )


def compute(frame: pd.DataFrame) -> pd.DataFrame:
    """Indicator columns (rsi_14, macd, macd_signal, macd_hist, bb_upper, bb_middle, bb_lower, atr_14) for each bar.

    Rows before an indicator's warm-up are NaN, as in TA-Lib.
    """
    ta = _pandas_ta()
    close, high, low = frame["close"], frame["high"], frame["low"]
    macd = ta.macd(close, fast=MACD_FAST, slow=MACD_SLOW, signal=MACD_SIGNAL, talib=True)
    bb = ta.bbands(close, length=BB_LENGTH, std=BB_STD, ddof=0, talib=True)
    suffix_macd = f"{MACD_FAST}_{MACD_SLOW}_{MACD_SIGNAL}"
    out = frame[[]].copy()
    out["rsi_14"] = ta.rsi(close, length=RSI_LENGTH, talib=True)
    out["macd"] = macd[f"MACD_{suffix_macd}"]
    out["macd_signal"] = macd[f"MACDs_{suffix_macd}"]
    out["macd_hist"] = macd[f"MACDh_{suffix_macd}"]
    out["bb_upper"] = bb[_bb_column(bb, "BBU")]
    out["bb_middle"] = bb[_bb_column(bb, "BBM")]
    out["bb_lower"] = bb[_bb_column(bb, "BBL")]
    out["atr_14"] = ta.atr(high, low, close, length=ATR_LENGTH, mamode="rma", talib=True)
    return out


def _pandas_ta():
    import warnings

    # pandas-ta-classic 0.8.32 stamps a creation time with Timestamp.dayofyear at import, which pandas 3.1 deprecates
    # (Pandas4Warning). It is harmless and not ours to fix; silence exactly that warning, once, at import.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Timestamp.dayofyear is deprecated")
        import pandas_ta_classic

    return pandas_ta_classic


def _bb_column(frame: pd.DataFrame, prefix: str) -> str:
    # pandas-ta-classic names the columns e.g. BBU_20_2.0 (older releases) or BBU_20_2.0_2.0; take the one present.
    return next(name for name in frame.columns if name.startswith(f"{prefix}_{BB_LENGTH}_"))


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
