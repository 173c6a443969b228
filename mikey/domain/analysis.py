"""What the analysis engines compute: indicators, patterns, sentiment, signals and backtests.

Indicator values are ``float`` (they are computed in float64).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mikey.domain.utc import require_utc


class IndicatorSnapshot(BaseModel):
    """Last-bar values of the standard indicator set (TA-Lib conventions), with the parameters that produced them."""

    model_config = ConfigDict(frozen=True)

    symbol: str
    as_of: datetime
    rsi_14: float = Field(description="RSI, Wilder smoothing, 14 bars.")
    macd: float = Field(description="MACD line, EMA(12) - EMA(26) of closes.")
    macd_signal: float = Field(description="EMA(9) of the MACD line.")
    macd_hist: float = Field(description="MACD line minus signal line.")
    bb_upper: float = Field(description="Bollinger upper band: SMA(20) + 2 population standard deviations.")
    bb_middle: float
    bb_lower: float
    atr_14: float = Field(description="Average true range, Wilder smoothing, 14 bars.")
    bars: int = Field(description="How many bars the values rest on.")

    _utc = field_validator("as_of")(require_utc)


class PatternFinding(BaseModel):
    """A pattern found by code: what, how strong, and the bars it rests on."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["candlestick", "support", "resistance", "trend", "volatility", "divergence"]
    name: str = Field(description="e.g. 'CDLENGULFING', 'support', 'uptrend', 'bearish RSI divergence'.")
    direction: Literal["bullish", "bearish", "neutral"]
    strength: float = Field(ge=0, le=1)
    start: datetime = Field(description="First bar the finding rests on (UTC).")
    end: datetime = Field(description="Last bar the finding rests on (UTC).")
    bars: int = Field(ge=1, description="How many bars it rests on.")
    level: float | None = Field(None, description="Price level for support/resistance.")

    _utc = field_validator("start", "end")(require_utc)


class SentimentScore(BaseModel):
    """Sentiment of a market (or one text): a score in [-1, 1] and what it rests on."""

    model_config = ConfigDict(frozen=True)

    symbol: str | None = None
    score: float = Field(ge=-1, le=1)
    label: Literal["positive", "negative", "neutral"]
    items: int = Field(ge=0, description="How many texts the score rests on.")
    as_of: datetime | None = None
    method: str = Field(description="Scorer, e.g. 'vader+lm+crypto' or a classifier path.")


class SignalFactor(BaseModel):
    """One input of a signal and how much it pushed: contribution in [-1, 1], positive = towards BUY."""

    model_config = ConfigDict(frozen=True)

    name: str
    value: float | None = None
    contribution: float = Field(ge=-1, le=1)
    reason: str


class Signal(BaseModel):
    """BUY / SELL / HOLD with a strength in [0, 1] and the factors that produced it."""

    model_config = ConfigDict(frozen=True)

    symbol: str
    as_of: datetime
    action: Literal["BUY", "SELL", "HOLD"]
    strength: float = Field(ge=0, le=1)
    factors: list[SignalFactor]

    _utc = field_validator("as_of")(require_utc)


class BacktestResult(BaseModel):
    """Performance of the signal rules over history, next to buy-and-hold."""

    model_config = ConfigDict(frozen=True)

    start: datetime
    end: datetime
    bars: int
    trades: int
    total_return: float
    cagr: float
    sharpe: float
    sortino: float
    max_drawdown: float
    hit_rate: float
    exposure: float
    buy_and_hold_return: float
    buy_and_hold_cagr: float
    buy_and_hold_max_drawdown: float
    fee_bps: float
    slippage_bps: float
