"""Signal rules: registered factors, a weighted score, and BUY / SELL / HOLD with the reasons that produced it.

Each factor is one explicit rule, registered with ``@factor`` (no dispatch on names), that reads the features of every
bar at once and returns a ``Reading``: a contribution in [-1, 1] per bar (positive pushes towards BUY, NaN while its
inputs warm up), the figure it looked at, and the reason in words for any bar. The vectorised ``score_series`` and the
per-bar ``signal_at`` share that one definition, so they cannot drift apart; ``signal_at`` evaluates the factors on the
bars up to ``i`` only, so a test that they agree on every bar also proves no factor reads a later bar.

The score is the weighted mean of the contributions of the factors in play: ``sum(w_k * c_k) / sum(w_k)``, so it is in
[-1, 1]. A factor whose inputs are not yet available counts as 0 (missing information pushes towards HOLD). Pattern and
sentiment factors are in play only when findings or scores are passed. The action is BUY at ``score >= threshold``,
SELL at ``score <= -threshold``, HOLD otherwise, and the strength is ``|score|``, so it moves with the evidence.

``features`` is a frame indexed by bar time (UTC; a naive index is read as UTC) holding the indicator columns of
``mikey.analysis.features`` and the bar's ``close`` (join the candles frame and the features frame).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from mikey.domain import PatternFinding, SentimentScore, Signal, SignalFactor
from mikey.errors import DataUnavailable, InvalidInput

DEFAULT_THRESHOLD = 0.15
"""|score| needed for BUY or SELL. The factors often disagree (trend against mean reversion), so scores are small: on
the bundled SOL, BTC and ETH history about 5% of bars reach +0.15 and 5% -0.15. Chosen from that spread, not tuned
on backtest returns. One factor alone (0.20 of the 0.85 feature weight) reaches it only at two-thirds of its full
push with every other factor silent."""

Source = Literal["features", "patterns", "sentiment"]


@dataclass(frozen=True)
class Inputs:
    """What the factors read: the features up to the bar being scored, and the optional findings and scores."""

    features: pd.DataFrame
    patterns: Sequence[PatternFinding] | None = None
    sentiment: Sequence[SentimentScore] | None = None
    latest: pd.Timestamp | None = None
    """The newest bar of the whole frame: an undated sentiment score means 'now' and counts on that bar only."""

    def column(self, name: str) -> np.ndarray:
        """One feature column as float64 values."""
        return self.features[name].to_numpy(dtype=float)


@dataclass(frozen=True)
class Reading:
    """A factor's output over all bars: contribution in [-1, 1] (NaN = not available), the figure, a reason per bar."""

    contribution: np.ndarray
    value: np.ndarray
    reason: Callable[[int], str]


@dataclass(frozen=True)
class Factor:
    """A registered rule: its name, default weight, the feature columns it needs and where its input comes from."""

    name: str
    weight: float
    columns: tuple[str, ...]
    source: Source
    read: Callable[[Inputs], Reading]


FACTORS: dict[str, Factor] = {}
"""Every factor, in registration order (the order a signal lists them)."""


FactorFn = Callable[[Inputs], Reading]


def factor(
    name: str, *, weight: float, columns: tuple[str, ...] = (), source: Source = "features"
) -> Callable[[FactorFn], FactorFn]:
    """Register ``fn(inputs) -> Reading`` as the factor ``name`` with a default ``weight``."""

    def register(fn: FactorFn) -> FactorFn:
        if name in FACTORS:
            raise ValueError(f"signal factor {name!r} is registered twice")
        FACTORS[name] = Factor(name, weight, columns, source, fn)
        return fn

    return register


RSI_OVERSOLD, RSI_OVERBOUGHT, RSI_FULL = 30.0, 70.0, 20.0
MACD_LEVEL_SCALE, MACD_SLOPE_SCALE = 0.2, 0.05  # in ATRs: near the median |histogram| and |slope| of SOL, BTC, ETH
TREND_GAP_SCALE, ADX_WEAK, ADX_STRONG = 0.05, 15.0, 40.0
STOCH_MID, STOCH_SPAN = 50.0, 30.0
PATTERN_BARS = 3
PATTERN_KINDS = ("candlestick", "divergence")


@factor("rsi", weight=0.20, columns=("rsi_14",))
def rsi_factor(x: Inputs) -> Reading:
    """Oversold RSI pushes BUY and overbought SELL, growing with the distance past 30 / 70 (full 20 points past);
    inside the band RSI says nothing, rather than nudging every bar."""
    rsi = x.column("rsi_14")
    c = np.clip((RSI_OVERSOLD - rsi) / RSI_FULL, 0, 1) - np.clip((rsi - RSI_OVERBOUGHT) / RSI_FULL, 0, 1)

    def reason(i: int) -> str:
        if rsi[i] < RSI_OVERSOLD:
            return f"RSI {rsi[i]:.1f} is oversold (below {RSI_OVERSOLD:.0f}): rebounds are likelier"
        if rsi[i] > RSI_OVERBOUGHT:
            return f"RSI {rsi[i]:.1f} is overbought (above {RSI_OVERBOUGHT:.0f}): pullbacks are likelier"
        return f"RSI {rsi[i]:.1f} is inside the neutral {RSI_OVERSOLD:.0f}-{RSI_OVERBOUGHT:.0f} band"

    return Reading(c, rsi, reason)


@factor("macd", weight=0.20, columns=("macd_hist", "atr_14"))
def macd_factor(x: Inputs) -> Reading:
    """A MACD histogram above zero and rising pushes BUY: half on its level, half on its one-bar slope, both in ATRs
    so the rule reads the same on a $20 coin and a $30,000 one."""
    hist, atr = x.column("macd_hist"), x.column("atr_14")
    level, slope = _ratio(hist, atr), _ratio(np.diff(hist, prepend=np.nan), atr)
    c = 0.5 * np.tanh(level / MACD_LEVEL_SCALE) + 0.5 * np.tanh(slope / MACD_SLOPE_SCALE)

    def reason(i: int) -> str:
        side = "above" if hist[i] > 0 else "below" if hist[i] < 0 else "at"
        way = "rising" if slope[i] > 0 else "falling" if slope[i] < 0 else "flat"
        return f"MACD histogram is {side} zero ({level[i]:+.2f} ATR) and {way} ({slope[i]:+.3f} ATR a bar)"

    return Reading(c, hist, reason)


@factor("bollinger", weight=0.15, columns=("close", "bb_upper", "bb_lower"))
def bollinger_factor(x: Inputs) -> Reading:
    """A close at the lower band pushes BUY and at the upper band SELL (mean reversion), linear in %B: 0 at the
    middle band, full at a band and beyond."""
    close, upper, lower = x.column("close"), x.column("bb_upper"), x.column("bb_lower")
    pct_b = _ratio(close - lower, upper - lower)
    c = np.clip(1 - 2 * pct_b, -1, 1)

    def reason(i: int) -> str:
        if pct_b[i] < 0:
            return f"close {close[i]:.6g} is below the lower Bollinger band {lower[i]:.6g}"
        if pct_b[i] > 1:
            return f"close {close[i]:.6g} is above the upper Bollinger band {upper[i]:.6g}"
        return f"close sits at {pct_b[i]:.0%} of the Bollinger range {lower[i]:.6g}-{upper[i]:.6g}"

    return Reading(c, pct_b, reason)


@factor("trend", weight=0.20, columns=("ema_20", "sma_50", "adx_14"))
def trend_factor(x: Inputs) -> Reading:
    """EMA(20) above SMA(50) is an uptrend: the push grows with the gap (tanh, a 5% gap gives 0.76) and is scaled by
    ADX, from nothing at 15 (no trend worth following) to full at 40 (a strong one)."""
    ema, sma, adx = x.column("ema_20"), x.column("sma_50"), x.column("adx_14")
    gap = _ratio(ema - sma, sma)
    c = np.tanh(gap / TREND_GAP_SCALE) * np.clip((adx - ADX_WEAK) / (ADX_STRONG - ADX_WEAK), 0, 1)

    def reason(i: int) -> str:
        side, kind = ("above", "uptrend") if gap[i] >= 0 else ("below", "downtrend")
        force = "strong" if adx[i] >= ADX_STRONG else "weak" if adx[i] <= ADX_WEAK else "moderate"
        return f"EMA(20) is {abs(gap[i]):.1%} {side} SMA(50), a {kind}; ADX {adx[i]:.0f} calls it {force}"

    return Reading(c, gap, reason)


@factor("stochastic", weight=0.10, columns=("stoch_k", "stoch_d"))
def stochastic_factor(x: Inputs) -> Reading:
    """%K crossing above %D pushes BUY and below SELL: half anywhere, growing to full when the cross happens deep in
    the oversold (overbought) zone, %K at 20 (80). Without a cross this bar it says nothing."""
    k, d = x.column("stoch_k"), x.column("stoch_d")
    kp, dp = np.roll(k, 1), np.roll(d, 1)
    up, down = (kp <= dp) & (k > d), (kp >= dp) & (k < d)
    c = np.where(up, 0.5 + 0.5 * np.clip((STOCH_MID - k) / STOCH_SPAN, 0, 1), 0.0)
    c = np.where(down, -0.5 - 0.5 * np.clip((k - STOCH_MID) / STOCH_SPAN, 0, 1), c)
    unknown = np.isnan(k) | np.isnan(d) | np.isnan(kp) | np.isnan(dp)
    unknown[:1] = True  # the first bar has no previous bar to cross from
    c[unknown] = np.nan

    def reason(i: int) -> str:
        if up[i]:
            return f"Stochastic %K {k[i]:.1f} crossed above %D {d[i]:.1f}"
        if down[i]:
            return f"Stochastic %K {k[i]:.1f} crossed below %D {d[i]:.1f}"
        return f"no Stochastic crossover (%K {k[i]:.1f}, %D {d[i]:.1f})"

    return Reading(c, k, reason)


@factor("patterns", weight=0.10, source="patterns")
def patterns_factor(x: Inputs) -> Reading:
    """Candlestick and divergence findings push their way with their strength from their last bar on, for
    PATTERN_BARS bars, fading (1, 2/3, 1/3). Other kinds (trend, support...) restate what the indicator factors read.
    A finding's ``end`` must be the bar that confirms it (a divergence is known only once its second swing is), or a
    backtest would act on it before it could be seen."""
    index, n = x.features.index, len(x.features)
    c, count = np.zeros(n), np.zeros(n)
    active: list[list[str]] = [[] for _ in range(n)]
    for f in x.patterns or ():
        end = pd.Timestamp(f.end)
        if f.kind not in PATTERN_KINDS or end < index[0]:
            continue
        sign = {"bullish": 1.0, "bearish": -1.0}.get(f.direction, 0.0)
        first = int(index.searchsorted(end))  # the bar the finding completes on (the next one, between bars)
        for age in range(PATTERN_BARS):
            if first + age < n:
                c[first + age] += sign * f.strength * (PATTERN_BARS - age) / PATTERN_BARS
                count[first + age] += 1
                active[first + age].append(f"{f.direction} {f.name} (strength {f.strength:.2f}, {age} bars ago)")

    def reason(i: int) -> str:
        if not active[i]:
            return f"no candlestick or divergence finding in the last {PATTERN_BARS} bars"
        return "; ".join(active[i])

    return Reading(np.clip(c, -1, 1), count, reason)


@factor("sentiment", weight=0.05, source="sentiment")
def sentiment_factor(x: Inputs) -> Reading:
    """The market's sentiment score pushes its way. A bar uses the newest score dated at or before the bar's
    timestamp (a naive date is UTC); an undated score means 'now' and counts on the newest bar only."""
    index, n = x.features.index, len(x.features)
    used: list[SentimentScore | None] = [None] * n
    dated = sorted((s for s in x.sentiment or () if s.as_of is not None), key=lambda s: _utc(s.as_of))
    if dated:
        newest = pd.DatetimeIndex([_utc(s.as_of) for s in dated]).searchsorted(index, side="right") - 1
        used = [dated[p] if p >= 0 else None for p in newest]
    undated = [s for s in x.sentiment or () if s.as_of is None]
    if undated and index[-1] == x.latest:
        used[-1] = undated[-1]
    c = np.array([np.nan if s is None else s.score for s in used])

    def reason(i: int) -> str:
        s = used[i]
        assert s is not None  # signal_at asks only for bars with a reading
        when = "now" if s.as_of is None else f"as of {_utc(s.as_of):%Y-%m-%d %H:%M}"
        return f"sentiment {s.score:+.2f} ({s.label}, {s.items} texts, {s.method}, {when})"

    return Reading(c, c.copy(), reason)


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a / b, NaN where b is 0 (a flat band or a zero price has no ratio)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b != 0, a / b, np.nan)


def _utc(moment: object) -> pd.Timestamp:
    ts = pd.Timestamp(moment)
    return ts.tz_localize("UTC") if ts.tz is None else ts.tz_convert("UTC")

DEFAULT_WEIGHTS: dict[str, float] = {f.name: f.weight for f in FACTORS.values()}


def resolve_weights(
    weights: Mapping[str, float] | None = None, *, patterns: bool = False, sentiment: bool = False
) -> dict[str, float]:
    """The normalised weights (summing to 1) of the factors in play; the score is ``sum(w_k * c_k)`` with these.

    ``weights`` may name any subset of ``FACTORS`` (an unnamed factor is off); the defaults are ``DEFAULT_WEIGHTS``.
    Pattern and sentiment factors are in play only when ``patterns`` / ``sentiment`` inputs are given.
    """
    chosen = dict(DEFAULT_WEIGHTS if weights is None else weights)
    unknown = sorted(set(chosen) - set(FACTORS))
    if unknown:
        raise InvalidInput(f"unknown signal factor(s) {', '.join(unknown)}; known: {', '.join(FACTORS)}")
    bad = [name for name, w in chosen.items() if not (np.isfinite(w) and w >= 0)]
    if bad:
        raise InvalidInput(f"signal weights must be finite and >= 0: {', '.join(bad)}")
    given = {"features": True, "patterns": patterns, "sentiment": sentiment}
    live = {name: w for name, w in chosen.items() if w > 0 and given[FACTORS[name].source]}
    total = sum(live.values())
    if total == 0:
        raise InvalidInput("no signal factor has a positive weight among those in play")
    return {name: live[name] / total for name in FACTORS if name in live}


def score_series(
    features: pd.DataFrame,
    weights: Mapping[str, float] | None = None,
    *,
    patterns: Sequence[PatternFinding] | None = None,
    sentiment: SentimentScore | Sequence[SentimentScore] | None = None,
) -> pd.Series:
    """The signal score in [-1, 1] of every bar (vectorised; the same maths as ``signal_at``)."""
    inputs = _inputs(features, patterns, sentiment)
    w = resolve_weights(weights, patterns=patterns is not None, sentiment=sentiment is not None)
    _check_columns(inputs.features, w)
    score = np.zeros(len(inputs.features))
    for name, weight in w.items():
        score += weight * np.nan_to_num(FACTORS[name].read(inputs).contribution, nan=0.0)
    return pd.Series(np.clip(score, -1.0, 1.0), index=inputs.features.index, name="score")


def signal_at(
    features: pd.DataFrame,
    i: int = -1,
    *,
    symbol: str,
    weights: Mapping[str, float] | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    patterns: Sequence[PatternFinding] | None = None,
    sentiment: SentimentScore | Sequence[SentimentScore] | None = None,
) -> Signal:
    """The signal at bar ``i`` (negative counts from the end), from the bars up to ``i`` only.

    Every factor in play is listed with its exact contribution (positive = towards BUY); a factor whose inputs are not
    available yet is listed with contribution 0 and says so.
    """
    _check_threshold(threshold)
    full = _inputs(features, patterns, sentiment)
    n = len(full.features)
    pos = i + n if i < 0 else i
    if not 0 <= pos < n:
        raise InvalidInput(f"bar {i} is outside the {n} bars given")
    inputs = Inputs(full.features.iloc[: pos + 1], full.patterns, full.sentiment, full.latest)
    w = resolve_weights(weights, patterns=patterns is not None, sentiment=sentiment is not None)
    _check_columns(inputs.features, w)
    listed: list[SignalFactor] = []
    score = 0.0
    for name, weight in w.items():
        reading = FACTORS[name].read(inputs)
        c, v = float(reading.contribution[pos]), float(reading.value[pos])
        if np.isnan(c):
            listed.append(SignalFactor(name=name, value=None, contribution=0.0,
                                       reason=f"{name}: not available at this bar ({_MISSING[FACTORS[name].source]})"))
            continue
        score += weight * c
        listed.append(SignalFactor(name=name, value=None if np.isnan(v) else v, contribution=c,
                                   reason=reading.reason(pos)))
    score = min(1.0, max(-1.0, score))
    action = "BUY" if score >= threshold else "SELL" if score <= -threshold else "HOLD"
    as_of = inputs.features.index[pos].to_pydatetime()
    return Signal(symbol=symbol, as_of=as_of, action=action, strength=abs(score), factors=listed)


def actions(score: pd.Series, threshold: float = DEFAULT_THRESHOLD, *, allow_short: bool = False) -> pd.Series:
    """Target position after each bar's signal: +1 long, 0 flat, -1 short.

    BUY goes long; SELL goes flat by default (long/flat: the fair comparison with buy-and-hold, and no funding or
    liquidation risk to model), or short with ``allow_short``; HOLD keeps the previous position (flat at the start).
    """
    _check_threshold(threshold)
    values = score.to_numpy(dtype=float)
    target = np.where(values >= threshold, 1.0, np.where(values <= -threshold, -1.0 if allow_short else 0.0, np.nan))
    held = pd.Series(target, index=score.index).ffill().fillna(0.0)
    return held.astype(int).rename("position")


def _inputs(
    features: pd.DataFrame,
    patterns: Sequence[PatternFinding] | None,
    sentiment: SentimentScore | Sequence[SentimentScore] | None,
) -> Inputs:
    if not isinstance(features, pd.DataFrame) or not isinstance(features.index, pd.DatetimeIndex):
        raise InvalidInput("signal features must be a DataFrame indexed by bar time (a DatetimeIndex)")
    if features.empty:
        raise DataUnavailable("no bars to compute a signal from")
    if not (features.index.is_monotonic_increasing and features.index.is_unique):
        raise InvalidInput("signal features must be in time order with one row per bar")
    index = features.index
    frame = features if index.tz is not None else features.set_axis(index.tz_localize("UTC"))
    scores = [sentiment] if isinstance(sentiment, SentimentScore) else None if sentiment is None else list(sentiment)
    return Inputs(frame, None if patterns is None else list(patterns), scores, frame.index[-1])


_MISSING: dict[Source, str] = {
    "features": "its indicators have no value yet: warm-up, or a bad bar",
    "patterns": "no findings",
    "sentiment": "no sentiment score dated at or before it",
}


def _check_columns(features: pd.DataFrame, weights: Mapping[str, float]) -> None:
    missing = sorted({c for name in weights for c in FACTORS[name].columns} - set(features.columns))
    if missing:
        raise InvalidInput(f"signal features lack column(s) {', '.join(missing)}")


def _check_threshold(threshold: float) -> None:
    if not 0 < threshold <= 1:
        raise InvalidInput(f"signal threshold must be in (0, 1]; got {threshold}")
