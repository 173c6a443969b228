"""Market tools: the latest quote and the indicator snapshot of one market, from any ``PriceFeed``."""

from __future__ import annotations

from mikey.analysis import indicators
from mikey.domain import IndicatorSnapshot, Quote
from mikey.market.feed import PriceFeed


def get_quote(feed: PriceFeed, symbol: str) -> Quote:
    """Latest quote of ``symbol`` at the feed's clock."""
    return feed.quote(symbol)


def get_indicators(feed: PriceFeed, symbol: str) -> IndicatorSnapshot:
    """RSI, MACD, Bollinger Bands and ATR on the daily candles up to the feed's clock."""
    return indicators.snapshot(feed.candles(symbol))
