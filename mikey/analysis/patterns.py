"""Patterns found by code: candlesticks, support/resistance, trend and volatility regimes, RSI divergences.

Every finding is a ``PatternFinding`` with a strength in [0, 1] and the bars it rests on. Its ``end`` is the bar on
which the finding became knowable, never a bar before: a swing point is only a swing once ``k`` later bars stayed
below (or above) it, so levels and divergences end on that confirming bar. A backtest reading findings by ``end``
therefore never looks ahead.

- Candlesticks: a curated list of TA-Lib's CDL functions, reported when they fire on the last ``candle_lookback``
  bars. Direction is the sign of TA-Lib's value (the doji family is neutral: TA-Lib's +100 there means "present").
  Strength = min(1, |value| / 100) x a reliability prior for the pattern x recency (1 on the last bar, falling
  linearly over the look-back). The priors rank multi-bar reversals above single candles and dojis, after
  Bulkowski's reliability tables; they are judgement, not fitted.
- Support/resistance: swing highs and lows (a bar whose high/low is the extreme of the ``swing_bars`` bars on each
  side) from the last ``level_lookback`` bars, clustered when within ``level_tolerance`` (relative) of a cluster's
  mean. A level below the last close is support, above it resistance (a broken level changes role). Strength =
  (1 - 0.5 ** touches) x (0.5 + 0.5 x recency of the last touch).
- Trend regime: ADX at or above ``trend_adx`` with the EMA's slope over ``trend_slope_bars`` giving the sign is an
  up- or downtrend, else a range; it rests on the bars the regime has held. Strength: min(1, ADX / 50) in a trend,
  (threshold - ADX) / threshold in a range.
- Volatility regime: the last realised volatility's percentile among its last ``vol_history`` values: low below
  ``vol_low``, high above ``vol_high``, else normal; strength is how far into its band it sits, shrunk when the
  history is shorter than ``vol_history``.
- RSI divergence: of the last two swing highs, price higher and RSI lower is bearish; of the last two swing lows,
  price lower and RSI higher is bullish. Strength = min(1, RSI gap / 20) x recency.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mikey.analysis.features import FeatureConfig
from mikey.domain import PatternFinding
from mikey.errors import DataUnavailable, InvalidInput

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

Kind = Literal["candlestick", "support", "resistance", "trend", "volatility", "divergence"]
Direction = Literal["bullish", "bearish", "neutral"]


@dataclass(frozen=True)
class Candlestick:
    """How to read one TA-Lib CDL function."""

    bars: int
    reliability: float
    directional: bool = True


CANDLESTICKS: dict[str, Candlestick] = {
    "CDLMORNINGSTAR": Candlestick(3, 0.9),
    "CDLEVENINGSTAR": Candlestick(3, 0.9),
    "CDL3WHITESOLDIERS": Candlestick(3, 0.9),
    "CDL3BLACKCROWS": Candlestick(3, 0.9),
    "CDLENGULFING": Candlestick(2, 0.8),
    "CDLPIERCING": Candlestick(2, 0.7),
    "CDLDARKCLOUDCOVER": Candlestick(2, 0.7),
    "CDLHARAMI": Candlestick(2, 0.5),
    "CDLHAMMER": Candlestick(1, 0.6),
    "CDLHANGINGMAN": Candlestick(1, 0.6),
    "CDLSHOOTINGSTAR": Candlestick(1, 0.6),
    "CDLINVERTEDHAMMER": Candlestick(1, 0.5),
    "CDLMARUBOZU": Candlestick(1, 0.5),
    "CDLDOJI": Candlestick(1, 0.3, directional=False),
    "CDLDRAGONFLYDOJI": Candlestick(1, 0.4, directional=False),
    "CDLGRAVESTONEDOJI": Candlestick(1, 0.4, directional=False),
}


class PatternConfig(BaseModel):
    """Parameters of every pattern finder; ``features`` must be the config the features frame was computed with."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    features: FeatureConfig = Field(default_factory=FeatureConfig)
    candlesticks: tuple[str, ...] = tuple(CANDLESTICKS)
    candle_lookback: int = Field(5, ge=1, description="Report candlesticks ending on the last N bars.")
    swing_bars: int = Field(5, ge=1, description="k: a swing is the extreme of the k bars on each side.")
    level_lookback: int = Field(250, ge=10, description="Bars whose swings make support/resistance levels.")
    level_tolerance: float = Field(0.015, gt=0, lt=0.5, description="Swings this close (relative) are one level.")
    max_levels: int = Field(3, ge=1, description="Strongest levels reported on each side of the price.")
    trend_adx: float = Field(25.0, gt=0, le=100)
    trend_slope_bars: int = Field(5, ge=1)
    vol_history: int = Field(365, ge=10, description="Realised-volatility values the percentile is taken among.")
    vol_min_history: int = Field(20, ge=5)
    vol_low: float = Field(0.2, gt=0, lt=0.5)
    vol_high: float = Field(0.8, gt=0.5, lt=1)
    divergence_swing_bars: int = Field(3, ge=1)
    divergence_max_span: int = Field(60, ge=2, description="Most bars between the two swings compared.")
    divergence_max_age: int = Field(10, ge=1, description="Most bars from the confirming bar to the last bar.")

    @field_validator("candlesticks")
    @classmethod
    def _known(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [n for n in names if n not in CANDLESTICKS]
        if unknown:
            raise ValueError(f"unknown candlestick(s) {', '.join(unknown)}; choose from {', '.join(CANDLESTICKS)}")
        return names

    def min_bars(self) -> int:
        """Bars ``find_patterns`` needs: the slowest of ADX, the EMA slope, and the volatility history."""
        warm = self.features.warmup()
        vol = warm.get(self.features.vol_column, 0) + self.vol_min_history - 1
        ema = warm.get(self.features.ema_column, 0) + self.trend_slope_bars
        return max(warm.get(self.features.adx_column, 0), ema, vol, 2 * self.swing_bars + 1)


def find_patterns(frame: pd.DataFrame, features: pd.DataFrame,
                  config: PatternConfig | None = None) -> list[PatternFinding]:
    """Every finding on ``frame`` (a validated OHLCV frame) and its ``features`` (from ``compute_features``).

    Raises ``DataUnavailable`` with fewer bars than ``config.min_bars()`` (50 by default) or when an indicator the
    regimes read has no value on the last bar, and ``InvalidInput`` when the two frames do not match.
    """
    config = config or PatternConfig()
    fc = config.features
    needed = [fc.rsi_column, fc.adx_column, fc.ema_column, fc.vol_column]
    missing = [name for name in needed if name not in features.columns]
    if missing:
        raise InvalidInput(f"features lack column(s) {', '.join(missing)}; compute them with the same FeatureConfig")
    if not frame.index.equals(features.index):
        raise InvalidInput("features were not computed from this frame (their bars differ)")
    if len(frame) < config.min_bars():
        raise DataUnavailable(f"patterns need at least {config.min_bars()} bars; got {len(frame)}")
    for name in (fc.adx_column, fc.ema_column, fc.vol_column):
        if not math.isfinite(features[name].iloc[-1]):
            raise DataUnavailable(f"{name} has no value on the last bar; trend and volatility regimes need it")
    return [
        *candlestick_patterns(frame, config),
        *support_resistance(frame, config),
        trend_regime(features, config),
        volatility_regime(features, config),
        *rsi_divergences(frame, features, config),
    ]


def candlestick_patterns(frame: pd.DataFrame, config: PatternConfig) -> list[PatternFinding]:
    """Curated TA-Lib candlesticks that fire on the last ``candle_lookback`` bars, newest first."""
    import numpy as np
    import talib

    o, h, lo, c = (np.ascontiguousarray(frame[n].to_numpy(dtype=np.float64)) for n in ("open", "high", "low", "close"))
    n, found = len(frame), []
    for name in config.candlesticks:
        spec = CANDLESTICKS[name]
        values = getattr(talib, name)(o, h, lo, c)
        for end in range(max(0, n - config.candle_lookback), n):
            value = int(values[end])
            if value == 0:
                continue
            direction: Direction = ("bullish" if value > 0 else "bearish") if spec.directional else "neutral"
            recency = 1 - (n - 1 - end) / config.candle_lookback
            strength = min(1.0, abs(value) / 100) * spec.reliability * recency
            start = max(0, end - spec.bars + 1)
            found.append(_finding(frame.index, "candlestick", name, direction, strength, start, end))
    return sorted(found, key=lambda f: (f.end, f.strength), reverse=True)


def swing_points(values: np.ndarray, k: int, kind: Literal["high", "low"]) -> np.ndarray:
    """Positions whose value is the extreme of the ``k`` values on each side (the first bar of a flat top counts).

    The last ``k`` bars can never qualify: their right side has not happened yet.
    """
    import numpy as np

    if len(values) < 2 * k + 1:
        return np.array([], dtype=np.int64)
    windows = np.lib.stride_tricks.sliding_window_view(values, 2 * k + 1)
    extreme = windows.argmax(axis=1) if kind == "high" else windows.argmin(axis=1)
    return np.flatnonzero(extreme == k) + k


def support_resistance(frame: pd.DataFrame, config: PatternConfig) -> list[PatternFinding]:
    """Clustered swing levels: up to ``max_levels`` supports below the last close and resistances above it."""
    import numpy as np

    n, k = len(frame), config.swing_bars
    first = max(0, n - config.level_lookback)
    high, low = frame["high"].to_numpy(dtype=float)[first:], frame["low"].to_numpy(dtype=float)[first:]
    points = sorted([(high[i], i + first) for i in swing_points(high, k, "high")]
                    + [(low[i], i + first) for i in swing_points(low, k, "low")])
    clusters: list[list[tuple[float, int]]] = []
    for price, pos in points:
        if clusters and abs(price / np.mean([p for p, _ in clusters[-1]]) - 1) <= config.level_tolerance:
            clusters[-1].append((price, pos))
        else:
            clusters.append([(price, pos)])
    close = float(frame["close"].iloc[-1])
    sides: dict[Literal["support", "resistance"], list[PatternFinding]] = {"support": [], "resistance": []}
    for cluster in clusters:
        level = float(np.mean([p for p, _ in cluster]))
        first_touch, last_touch = min(pos for _, pos in cluster), max(pos for _, pos in cluster)
        recency = 1 - (n - 1 - last_touch) / config.level_lookback
        strength = (1 - 0.5 ** len(cluster)) * (0.5 + 0.5 * recency)
        side: Literal["support", "resistance"] = "support" if level <= close else "resistance"
        direction: Direction = "bullish" if side == "support" else "bearish"
        sides[side].append(_finding(frame.index, side, side, direction, strength, first_touch,
                                    min(n - 1, last_touch + k), level=level))
    out: list[PatternFinding] = []
    for found in sides.values():
        ranked = sorted(found, key=lambda f: (-f.strength, abs((f.level or close) - close)))
        out.extend(ranked[: config.max_levels])
    return out


def trend_regime(features: pd.DataFrame, config: PatternConfig) -> PatternFinding:
    """Uptrend, downtrend or range on the last bar, resting on the bars the regime has held."""
    import numpy as np

    fc = config.features
    adx = features[fc.adx_column].to_numpy(dtype=float)
    ema = features[fc.ema_column].to_numpy(dtype=float)
    slope = np.full(len(ema), np.nan)
    slope[config.trend_slope_bars:] = ema[config.trend_slope_bars:] - ema[: -config.trend_slope_bars]
    trending = adx >= config.trend_adx
    if np.isnan(adx[-1]) or np.isnan(slope[-1]):
        raise DataUnavailable(f"trend regime needs {fc.adx_column} and {fc.ema_column} over {config.trend_slope_bars}"
                              " bars; not warmed up on the last bar")
    regime = np.where(np.isnan(adx) | np.isnan(slope), 9, np.where(trending, np.sign(slope), 0))
    held = _run_length(regime)
    last_adx, code = float(adx[-1]), int(regime[-1])
    regimes: dict[int, tuple[str, Direction]] = {1: ("uptrend", "bullish"), -1: ("downtrend", "bearish"),
                                                 0: ("range", "neutral")}
    name, direction = regimes[code]
    strength = min(1.0, last_adx / 50) if code else (config.trend_adx - last_adx) / config.trend_adx
    n = len(features)
    return _finding(features.index, "trend", name, direction, strength, n - held, n - 1)


def volatility_regime(features: pd.DataFrame, config: PatternConfig) -> PatternFinding:
    """Low, normal or high realised volatility: the last value's percentile among its own recent history."""
    import numpy as np

    vol = features[config.features.vol_column].to_numpy(dtype=float)
    n, valid = len(vol), np.isfinite(vol)
    if not valid[-1]:
        raise DataUnavailable(f"volatility regime needs {config.features.vol_column} on the last bar")
    start = max(int(np.argmax(valid)), n - config.vol_history)
    history, now = vol[start:], vol[-1]
    percentile = (np.sum(history < now) + 0.5 * np.sum(history == now)) / len(history)
    if percentile < config.vol_low:
        name, band = "low volatility", (config.vol_low - percentile) / config.vol_low
    elif percentile > config.vol_high:
        name, band = "high volatility", (percentile - config.vol_high) / (1 - config.vol_high)
    else:
        half = (config.vol_high - config.vol_low) / 2
        name, band = "normal volatility", 1 - abs(percentile - (config.vol_low + half)) / half
    confidence = math.sqrt(min(1.0, len(history) / config.vol_history))
    return _finding(features.index, "volatility", name, "neutral", band * confidence, start, n - 1)


def rsi_divergences(frame: pd.DataFrame, features: pd.DataFrame, config: PatternConfig) -> list[PatternFinding]:
    """Bearish (higher high, lower RSI high) and bullish (lower low, higher RSI low) divergences still fresh."""
    rsi = features[config.features.rsi_column].to_numpy(dtype=float)
    k, n, found = config.divergence_swing_bars, len(frame), []
    sides: tuple[tuple[Literal["high", "low"], float, Direction], ...] = (("high", 1.0, "bearish"),
                                                                         ("low", -1.0, "bullish"))
    for kind, sign, direction in sides:
        price = frame[kind].to_numpy(dtype=float)
        swings = swing_points(price, k, kind)
        if len(swings) < 2:
            continue
        p1, p2 = int(swings[-2]), int(swings[-1])
        confirmed = p2 + k
        age = n - 1 - confirmed
        if p2 - p1 > config.divergence_max_span or age > config.divergence_max_age:
            continue
        if not (math.isfinite(rsi[p1]) and math.isfinite(rsi[p2])):
            continue
        price_further = sign * (price[p2] - price[p1]) > 0
        rsi_weaker = sign * (rsi[p2] - rsi[p1]) < 0
        if price_further and rsi_weaker:
            recency = 1 - age / (config.divergence_max_age + 1)
            strength = min(1.0, abs(rsi[p2] - rsi[p1]) / 20) * recency
            found.append(_finding(frame.index, "divergence", f"{direction} RSI divergence", direction, strength,
                                  p1, confirmed))
    return found


def _run_length(codes: np.ndarray) -> int:
    """How many bars at the end share the last bar's code."""
    import numpy as np

    changed = np.flatnonzero(codes != codes[-1])
    return len(codes) - (int(changed[-1]) + 1 if len(changed) else 0)


def _finding(index: pd.DatetimeIndex, kind: Kind, name: str, direction: Direction, strength: float, start: int,
             end: int, level: float | None = None) -> PatternFinding:
    # Rounded to 6 places: strengths are scores, and clipping guards the [0, 1] contract against float edges.
    return PatternFinding(
        kind=kind, name=name, direction=direction, strength=round(min(1.0, max(0.0, float(strength))), 6),
        start=index[start].to_pydatetime(), end=index[end].to_pydatetime(), bars=end - start + 1, level=level,
    )
