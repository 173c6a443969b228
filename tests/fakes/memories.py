"""Answers and insights to remember: what the vector-memory tests store, on the embedded Chroma and on a server."""

from __future__ import annotations

from mikey.domain import Answer, Facts, GroundingReport, Insight, SentimentScore, Signal, SignalFactor
from mikey.market.replay import ReplayFeed

SOL_MACD = "Solana momentum turned bullish as its MACD crossed above the signal line."


def answer_for(symbol: str, text: str) -> Answer:
    """An offline writer's answer about ``symbol`` (its replay quote as the facts) saying ``text``."""
    return Answer(text=text, facts=Facts(symbol=symbol, quote=ReplayFeed().quote(symbol)), group="offline",
                  model="mikey-offline/facts-writer")


def insight_for(symbol: str, summary: str, *, action: str = "BUY", strength: float = 0.62) -> Insight:
    """A pipeline insight on ``symbol`` at its replay quote: ``summary``, a MACD-cross signal, MEDIUM risk."""
    quote = ReplayFeed().quote(symbol)
    as_of = quote.as_of
    signal = Signal(symbol=symbol, as_of=as_of, action=action, strength=strength, factors=[
        SignalFactor(name="macd_cross", value=0.41, contribution=0.5, reason="MACD crossed above its signal line"),
    ])
    sentiment = SentimentScore(symbol=symbol, score=0.3, label="positive", items=4, as_of=as_of, method="vader")
    return Insight(symbol=symbol, as_of=as_of, summary=summary, signal=signal, sentiment=sentiment, patterns=[],
                   risk_level="MEDIUM", risk_score=42.0, recommendations=["Size positions for the wider daily range."],
                   alerts=[], facts=Facts(symbol=symbol, quote=quote, signal=signal, sentiment=sentiment),
                   grounding=GroundingReport(checked=1, matched=1), group="offline", model="mikey-offline/writer")
