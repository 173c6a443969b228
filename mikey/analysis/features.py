"""The configurable indicator set: one column per indicator value, computed with TA-Lib wherever it has the indicator.

TA-Lib is both the reference for the values (the tests compare with its own functions) and the fastest backend, so
RSI, MACD, Bollinger Bands, ATR, EMA, SMA, ADX, OBV and Stochastic call it directly on float64 arrays; going through
pandas-ta-classic would add per-call overhead for the same numbers. Conventions are therefore TA-Lib's: Wilder
smoothing for RSI, ATR and ADX; Bollinger Bands over the population standard deviation; MACD from EMAs seeded with a
simple mean; Stochastic %K smoothed and %D both simple averages; OBV starting at the first bar's volume (its level
is arbitrary, only its changes mean something). Rows before an indicator's warm-up are NaN, exactly as in TA-Lib.

Two indicators TA-Lib lacks are written here in numpy, because pandas-ta-classic's versions do not fit daily crypto
bars: its VWAP is anchored to a calendar session (on daily bars each bar is its own session, so VWAP would equal the
typical price) and its historical volatility is in percent over 252 trading days.

- ``vwap_N``: rolling VWAP of the typical price (high + low + close) / 3 over the last N bars, weighted by volume.
  Bars with zero volume carry no weight; a window with no volume at all has no VWAP (NaN, never a made-up price).
- ``realized_vol_N``: annualised realised volatility, the *sample* standard deviation (ddof=1) of the last N daily
  log returns times sqrt(365) (crypto trades every day), as a fraction: 0.65 means 65 % a year.

``last_values`` is the only way numbers leave this module for an answer, and it never returns NaN.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mikey.errors import DataUnavailable, InvalidInput

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

Indicator = Literal["rsi", "macd", "bbands", "atr", "ema", "sma", "adx", "obv", "vwap", "stoch", "realized_vol"]
ALL_INDICATORS: tuple[Indicator, ...] = (
    "rsi", "macd", "bbands", "atr", "ema", "sma", "adx", "obv", "vwap", "stoch", "realized_vol",
)


class FeatureConfig(BaseModel):
    """Which indicators to compute and their periods; column names follow the periods (``rsi_14``, ``sma_50``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    indicators: tuple[Indicator, ...] = Field(ALL_INDICATORS, description="Computed in the order of ALL_INDICATORS.")
    rsi_length: int = Field(14, ge=2)
    macd_fast: int = Field(12, ge=2)
    macd_slow: int = Field(26, ge=2)
    macd_signal: int = Field(9, ge=1)
    bb_length: int = Field(20, ge=2)
    bb_std: float = Field(2.0, gt=0, description="Band width in population standard deviations.")
    atr_length: int = Field(14, ge=1)
    ema_length: int = Field(20, ge=2)
    sma_length: int = Field(50, ge=2)
    adx_length: int = Field(14, ge=2)
    vwap_length: int = Field(20, ge=1)
    stoch_k: int = Field(14, ge=1, description="%K look-back (fast %K period).")
    stoch_smooth_k: int = Field(3, ge=1, description="SMA smoothing of fast %K into the reported (slow) %K.")
    stoch_d: int = Field(3, ge=1, description="SMA of %K giving %D.")
    vol_length: int = Field(30, ge=2, description="Log returns in the realised-volatility window.")
    vol_annualization: float = Field(365.0, gt=0, description="Bars per year: 365 for daily crypto bars.")

    @model_validator(mode="after")
    def _fast_below_slow(self) -> FeatureConfig:
        if self.macd_fast >= self.macd_slow:
            raise ValueError(f"macd_fast ({self.macd_fast}) must be below macd_slow ({self.macd_slow})")
        return self

    @property
    def rsi_column(self) -> str:
        return f"rsi_{self.rsi_length}"

    @property
    def atr_column(self) -> str:
        return f"atr_{self.atr_length}"

    @property
    def ema_column(self) -> str:
        return f"ema_{self.ema_length}"

    @property
    def adx_column(self) -> str:
        return f"adx_{self.adx_length}"

    @property
    def vol_column(self) -> str:
        return f"realized_vol_{self.vol_length}"

    def warmup(self) -> dict[str, int]:
        """Bars each column needs before its first value: TA-Lib's lookback plus one (MACD 34, ADX 28, SMA(50) 50)."""
        macd = self.macd_slow + self.macd_signal - 1
        stoch = self.stoch_k + self.stoch_smooth_k + self.stoch_d - 2
        needs: dict[Indicator, dict[str, int]] = {
            "rsi": {self.rsi_column: self.rsi_length + 1},
            "macd": {"macd": macd, "macd_signal": macd, "macd_hist": macd},
            "bbands": {"bb_upper": self.bb_length, "bb_middle": self.bb_length, "bb_lower": self.bb_length},
            "atr": {self.atr_column: self.atr_length + 1},
            "ema": {self.ema_column: self.ema_length},
            "sma": {f"sma_{self.sma_length}": self.sma_length},
            "adx": {self.adx_column: 2 * self.adx_length},
            "obv": {"obv": 1},
            "vwap": {f"vwap_{self.vwap_length}": self.vwap_length},
            "stoch": {"stoch_k": stoch, "stoch_d": stoch},
            "realized_vol": {self.vol_column: self.vol_length + 1},
        }
        return {col: n for ind in ALL_INDICATORS if ind in self.indicators for col, n in needs[ind].items()}

    def columns(self) -> list[str]:
        """Output columns of ``compute_features``, in order."""
        return list(self.warmup())


def compute_features(frame: pd.DataFrame, config: FeatureConfig | None = None) -> pd.DataFrame:
    """One column per indicator value for every bar of ``frame`` (a validated OHLCV frame, see ``ohlcv``).

    Raises ``InvalidInput`` for bars that would make TA-Lib return wrong numbers rather than NaN: unsorted or
    duplicated dates, non-finite values. Run ``ohlcv.validate_ohlcv`` first to get the full policy.
    """
    import pandas as pd
    import talib

    config = config or FeatureConfig()
    o, h, lo, c, v = _arrays(frame)
    selected = set(config.indicators)
    out: dict[str, np.ndarray] = {}
    if "rsi" in selected:
        out[config.rsi_column] = talib.RSI(c, config.rsi_length)
    if "macd" in selected:
        out["macd"], out["macd_signal"], out["macd_hist"] = talib.MACD(
            c, config.macd_fast, config.macd_slow, config.macd_signal)
    if "bbands" in selected:
        out["bb_upper"], out["bb_middle"], out["bb_lower"] = talib.BBANDS(
            c, config.bb_length, config.bb_std, config.bb_std, 0)
    if "atr" in selected:
        out[config.atr_column] = talib.ATR(h, lo, c, config.atr_length)
    if "ema" in selected:
        out[config.ema_column] = talib.EMA(c, config.ema_length)
    if "sma" in selected:
        out[f"sma_{config.sma_length}"] = talib.SMA(c, config.sma_length)
    if "adx" in selected:
        out[config.adx_column] = talib.ADX(h, lo, c, config.adx_length)
    if "obv" in selected:
        out["obv"] = talib.OBV(c, v)
    if "vwap" in selected:
        out[f"vwap_{config.vwap_length}"] = rolling_vwap(h, lo, c, v, config.vwap_length)
    if "stoch" in selected:
        out["stoch_k"], out["stoch_d"] = talib.STOCH(
            h, lo, c, config.stoch_k, config.stoch_smooth_k, 0, config.stoch_d, 0)
    if "realized_vol" in selected:
        out[config.vol_column] = realized_volatility(c, config.vol_length, config.vol_annualization)
    # The arrays are fresh and owned by nobody else; copying them into the frame would cost as much as the MACD.
    return pd.DataFrame(out, index=frame.index, copy=False)


def rolling_vwap(high: np.ndarray, low: np.ndarray, close: np.ndarray, volume: np.ndarray, length: int) -> np.ndarray:
    """Volume-weighted typical price over the last ``length`` bars; NaN in warm-up and where the window has no volume.

    A window without volume is found from its largest volume (exactly 0.0), not by testing a running float sum,
    which can keep a rounding residue after large bars.
    """
    import numpy as np
    import talib

    priced = talib.SUM((high + low + close) / 3.0 * volume, length)
    traded = talib.SUM(volume, length)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(talib.MAX(volume, length) > 0, priced / traded, np.nan)


def realized_volatility(close: np.ndarray, length: int, annualization: float) -> np.ndarray:
    """Sample std (ddof=1) of the last ``length`` log returns, times sqrt(annualization); NaN for the first bars.

    TA-Lib's VAR (population, over running sums) is rescaled to the sample variance. Its STDDEV is not used: it
    returns 0 for any variance below 1e-8, which a calm market's daily returns can reach.
    """
    import numpy as np
    import talib

    out = np.full(len(close), np.nan)
    if len(close) <= length:
        return out
    log_close = np.log(close)
    returns = log_close[1:] - log_close[:-1]
    # Centring keeps the running sums' mean-square minus squared-mean free of cancellation for drifting markets.
    variance = talib.VAR(returns - returns.mean(), length) * (length / (length - 1))
    out[1:] = np.sqrt(np.maximum(variance, 0.0) * annualization)
    return out


def last_values(features: pd.DataFrame, config: FeatureConfig | None = None) -> dict[str, float]:
    """Every column's value on the last bar, all finite, for facts and JSON.

    Raises ``DataUnavailable`` naming each indicator without a value: not warmed up (with ``config``, the message
    says how many bars it needs) or undefined on the last bar (e.g. VWAP over a window without volume).
    """
    if features.empty:
        raise DataUnavailable("no bars to take indicator values from")
    last = features.iloc[-1]
    bad = [name for name, value in last.items() if not math.isfinite(value)]
    if bad:
        needs = config.warmup() if config else {}
        reasons = [_why_missing(features, str(name), needs.get(str(name))) for name in bad]
        raise DataUnavailable(f"no indicator value on the last bar ({features.index[-1]}): {'; '.join(reasons)}")
    return {str(name): float(value) for name, value in last.items()}


def _why_missing(features: pd.DataFrame, name: str, needed: int | None) -> str:
    import numpy as np

    if np.isfinite(features[name].to_numpy(dtype=float)).any() or (needed is not None and len(features) >= needed):
        return f"{name} is undefined there" + (" (no volume in its window)" if name.startswith("vwap_") else "")
    minimum = f"needs at least {needed}" if needed else "needs more"
    return f"{name} is not warmed up ({len(features)} bars; it {minimum})"


def _arrays(frame: pd.DataFrame) -> tuple[np.ndarray, ...]:
    import numpy as np

    missing = [name for name in ("open", "high", "low", "close", "volume") if name not in frame.columns]
    if missing:
        raise InvalidInput(f"OHLCV frame lacks column(s) {', '.join(missing)}")
    if not (frame.index.is_monotonic_increasing and frame.index.is_unique):
        raise InvalidInput("bars must be in strictly increasing date order; run ohlcv.validate_ohlcv first")
    arrays = tuple(np.ascontiguousarray(frame[n].to_numpy(dtype=np.float64)) for n in ("open", "high", "low",
                                                                                       "close", "volume"))
    if not all(np.isfinite(a).all() for a in arrays):
        raise InvalidInput("OHLCV values hold NaN or infinity; run ohlcv.validate_ohlcv first to find the rows")
    return arrays
