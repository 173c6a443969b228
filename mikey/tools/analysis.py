"""Analysis tool: the full code-computed analysis of one market (indicators, patterns, sentiment, signal, backtest)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from mikey.analysis.report import AnalysisReport
from mikey.market.feed import PriceFeed


def analyze_market(feed: PriceFeed, symbol: str, *, news: Iterable[Any] = (), as_of: datetime | None = None,
                   with_backtest: bool = True) -> AnalysisReport:
    """``AnalysisReport`` of ``symbol`` over the feed's daily candles up to ``as_of`` (default: the feed's clock).

    ``with_backtest=False`` skips the backtest (a chat turn uses patterns, sentiment and signal only)."""
    from mikey.analysis.ohlcv import frame_from_candles
    from mikey.analysis.report import analyze

    frame = frame_from_candles(feed.candles(symbol, end=as_of))
    return analyze(frame, symbol=symbol, source=feed.name, news=news, as_of=as_of, with_backtest=with_backtest)
