"""One market analysis, all computed by code: features, patterns, sentiment, signal and its backtest.

This is what ``mikey analyze`` prints and what the agent's analysis tool returns. The signal at the last bar uses
everything known then (patterns and sentiment included); the backtest scores the technical rules on every bar,
because past sentiment and pattern findings are not stored per bar, and using today's would look ahead.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from mikey.domain import BacktestResult, PatternFinding, SentimentScore, Signal

if TYPE_CHECKING:
    import pandas as pd


class AnalysisReport(BaseModel):
    """The JSON contract of ``mikey analyze --json``."""

    symbol: str
    as_of: datetime
    price: float = Field(description="Close of the last bar.")
    source: str = Field(description="Where the bars came from: the feed, or the CSV given with --history.")
    bars: int
    indicators: dict[str, float] = Field(description="Last-bar values: rsi_14, macd, macd_signal, ... all finite.")
    patterns: list[PatternFinding]
    sentiment: SentimentScore
    signal: Signal
    backtest: BacktestResult | None = Field(description="None only when not asked for (a chat turn needs no backtest).")
    warnings: list[str] = Field(default_factory=list, description="What validation noticed but allowed (gaps, ...).")


def analyze(frame: pd.DataFrame, *, symbol: str, source: str, news: Iterable[Any] = (),
            as_of: datetime | None = None, with_backtest: bool = True) -> AnalysisReport:
    """Analyse an OHLCV frame (any order; validated here) up to ``as_of`` (default: its last bar)."""
    from mikey.analysis import backtest, features, ohlcv, patterns, sentiment, signals

    config = features.FeatureConfig()
    if as_of is not None:
        frame = frame[frame.index <= as_of]
    check = ohlcv.validate_ohlcv(frame, min_bars=max(config.warmup().values()) + 1)
    frame = check.frame
    feats = features.compute_features(frame, config)
    indicators = features.last_values(feats, config)
    with_prices = feats.join(frame[["open", "high", "low", "close", "volume"]])
    found = patterns.find_patterns(frame, feats)
    now = frame.index[-1].to_pydatetime()
    mood = sentiment.aggregate(news, symbol=symbol, now=now)
    signal = signals.signal_at(with_prices, -1, symbol=symbol, patterns=found, sentiment=mood)
    result = backtest.backtest_signals(with_prices) if with_backtest else None
    return AnalysisReport(symbol=symbol, as_of=now, price=float(frame["close"].iloc[-1]), source=source,
                          bars=len(frame), indicators=indicators, patterns=found, sentiment=mood, signal=signal,
                          backtest=result, warnings=check.warnings)
