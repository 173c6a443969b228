"""One market's entry in the market summary feed, as the analysis pipeline writes it."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from mikey.domain.analysis import PatternFinding, SentimentScore, Signal
from mikey.domain.facts import Facts, GroundingReport
from mikey.domain.risk import RiskAlert
from mikey.domain.utc import require_utc


class Insight(BaseModel):
    """One market's entry in the market summary feed: the analysis pipeline's output, stored in memory."""

    symbol: str
    as_of: datetime
    summary: str = Field(description="Grounded narrative written by a model (or the offline writer).")
    signal: Signal
    sentiment: SentimentScore
    patterns: list[PatternFinding]
    risk_level: Literal["LOW", "MEDIUM", "HIGH", "CRITICAL"]
    risk_score: float = Field(ge=0, le=100)
    recommendations: list[str]
    alerts: list[RiskAlert]
    facts: Facts
    grounding: GroundingReport
    group: str
    model: str

    _utc = field_validator("as_of")(require_utc)
