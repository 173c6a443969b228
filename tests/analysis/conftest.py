"""An insight built straight from the engines, for the rules over insights (recommendations, alerts)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from mikey.analysis import indicators
from mikey.analysis.ohlcv import frame_from_candles
from mikey.analysis.report import analyze
from mikey.domain import Facts, GroundingReport, Insight, PositionInput
from mikey.market.replay import ReplayFeed
from mikey.tools.risk import assess_position


@pytest.fixture(scope="session")
def replay_insight() -> Callable[[str], Insight]:
    """``symbol`` -> its insight on the bundled replay data as the pipeline assembles it (readings of ``analyze``,
    risk of a 1x long of 1,000 USD), without recommendations or alerts, the rules under test."""
    feed = ReplayFeed()

    def build(symbol: str) -> Insight:
        candles = feed.candles(symbol)
        report = analyze(frame_from_candles(candles), symbol=symbol, source=feed.name, with_backtest=False)
        quote = feed.quote(symbol)
        risk = assess_position(feed, PositionInput(market=symbol, side="long", size=1000 / float(quote.price),
                                                   collateral=1000.0, leverage=1.0))
        facts = Facts(symbol=symbol, quote=quote, indicators=indicators.snapshot(candles), patterns=report.patterns,
                      sentiment=report.sentiment, signal=report.signal, risk=risk)
        return Insight(symbol=symbol, as_of=report.as_of, summary="", signal=report.signal,
                       sentiment=report.sentiment, patterns=report.patterns, risk_level=risk.risk_level,
                       risk_score=risk.risk_score, recommendations=[], alerts=[], facts=facts,
                       grounding=GroundingReport(), group="offline", model="none")

    return build

