"""What one turn gathered (``Facts``, with each tool's provenance and recalled memories) and how an answer's numbers
matched it (``GroundingReport``)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from mikey.domain.analysis import IndicatorSnapshot, PatternFinding, SentimentScore, Signal
from mikey.domain.market import NewsItem, Quote
from mikey.domain.numbers import Fact, stated_numbers
from mikey.domain.risk import RiskAssessment


class Provenance(BaseModel):
    """Where one tool's result in a turn's ``Facts`` came from, or why it is missing."""

    model_config = ConfigDict(frozen=True)

    tool: str = Field(description="e.g. 'quote', 'indicators', 'analysis', 'risk', 'memory'.")
    source: str = Field(description="The feed, engine or store behind it, e.g. 'replay', 'pyth', 'chroma'.")
    as_of: datetime | None = None
    error: str | None = Field(None, description="Why the tool gave nothing; the turn goes on without it.")


class Recall(BaseModel):
    """A document recalled from the vector memory: older words, never a source of current numbers."""

    model_config = ConfigDict(frozen=True)

    collection: str
    text: str
    similarity: float = Field(description="Cosine similarity to the query, 1 = same meaning.")
    score: float = Field(description="Ranking score: similarity weighted by recency.")
    stored_at: datetime
    symbol: str | None = None


class Facts(BaseModel):
    """Everything the tools gathered for one turn. The only place numbers in an answer may come from.

    News headlines and recalled memories are context for the words and are never a source of numbers: their text is
    written by others (or by an earlier turn) and is not checked against a market source.
    """

    symbol: str
    quote: Quote | None = None
    indicators: IndicatorSnapshot | None = None
    parameters: dict[str, float] = Field(
        default_factory=dict, description="Indicator periods and multipliers, which a narrative may name."
    )
    patterns: list[PatternFinding] = Field(default_factory=list)
    sentiment: SentimentScore | None = None
    signal: Signal | None = None
    risk: RiskAssessment | None = None
    news: list[NewsItem] = Field(default_factory=list, description="Headlines the sentiment rests on (untrusted).")
    memories: list[Recall] = Field(default_factory=list)
    compared: list[Facts] = Field(default_factory=list, description="Facts of the other markets of a comparison.")
    provenance: list[Provenance] = Field(default_factory=list)

    def numbers(self) -> list[Fact]:
        """The facts as labelled numbers, in the order a facts card shows them (see ``mikey.domain.numbers``)."""
        return stated_numbers(self)


class GroundingReport(BaseModel):
    """How the numbers in a narrative matched the facts."""

    checked: int = 0
    matched: int = 0
    removed: list[str] = Field(default_factory=list, description="Number tokens that matched no fact.")
    claims: list[str] = Field(
        default_factory=list, description="Sentences removed for claiming a trade was made, approved or is under way.")
    repeated: int = Field(0, description="Sentences dropped because the draft had already said them (a looping model).")

    @property
    def score(self) -> float:
        """Share of numbers that matched a fact; 1.0 when the narrative has none."""
        return 1.0 if self.checked == 0 else self.matched / self.checked
