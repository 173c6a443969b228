"""One chat turn: what the user asked for (``Intent``), the trade it may propose, and MIKEY's ``Answer``."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from mikey.domain.facts import Facts, GroundingReport
from mikey.domain.risk import RiskAssessment
from mikey.domain.utc import optional_utc, require_utc

IntentKind = Literal[
    "price", "analysis", "compare", "explain", "risk", "portfolio", "trade", "alert", "smalltalk", "unknown"
]
Timeframe = Literal["1h", "4h", "1d", "1w", "1M"]
RiskTolerance = Literal["low", "medium", "high"]


class Intent(BaseModel):
    """What the user asked for, as parsed from the message (by the ``understand`` model, checked by the rules)."""

    kind: IntentKind
    symbols: list[str] = Field(default_factory=list, description="Resolved, supported market symbols.")
    unknown_symbols: list[str] = Field(default_factory=list, description="Tickers named that MIKEY does not cover.")
    timeframe: Timeframe | None = Field(None, description="Horizon the user asked about, if any.")
    side: Literal["long", "short"] | None = None
    leverage: float | None = Field(None, gt=0, le=100)
    collateral: float | None = Field(None, gt=0, description="Margin in USD(C).")
    order: Literal["open", "close", "reduce"] | None = Field(
        None, description="For a trade: open a position, or close / reduce one the user holds.")
    fraction: float | None = Field(None, gt=0, le=1, description="Share of the position a reduce closes.")
    risk_tolerance: RiskTolerance | None = None
    favourite_markets: list[str] = Field(default_factory=list, description="Markets the user said they follow.")
    parsed_by: str = Field("rules", description="'rules', or the model group whose parse the rules confirmed.")


class TradeProposal(BaseModel):
    """A trade a chat turn proposes and never executes by itself: it waits for the user's approval (a reply "yes" in
    the same thread, or ``mikey positions approve``), which binds to ``digest``, the exact order shown.

    Every parameter comes from the user's own message or the position they hold, never from a model or fetched text;
    the risk assessment (for an open) is the engine's, at the proposal's price.
    """

    id: str
    kind: Literal["open", "close", "reduce"] = "open"
    market: str
    side: Literal["long", "short"]
    leverage: float = Field(gt=0, le=100)
    collateral: float = Field(gt=0, description="Margin in USD(C) committed (open) or released (close, reduce).")
    size: float = Field(gt=0, description="Base units: collateral * leverage / entry price (or the size closed).")
    entry_price: float = Field(gt=0, description="Current price when proposed.")
    risk: RiskAssessment | None = Field(None, description="The engine's assessment of an open; None for a close.")
    position_id: str | None = Field(None, description="The position a close or reduce acts on.")
    status: Literal["awaiting_approval"] = "awaiting_approval"
    created_at: datetime
    expires_at: datetime | None = None
    digest: str | None = Field(None, description="Digest of the exact order; an approval binds to it.")
    price_bound: float | None = Field(None, gt=0, description="Worst fill price the order accepts.")
    note: str = "Nothing executes until you approve it: reply yes to approve or no to reject."

    _utc = field_validator("created_at")(require_utc)
    _utc_optional = field_validator("expires_at")(optional_utc)


class Answer(BaseModel):
    """One reply of MIKEY's: grounded words, the facts behind them, and who wrote them."""

    text: str
    facts: Facts | None = None
    group: str = Field(description="Model group that wrote the words ('rules' when no model was needed).")
    model: str = Field(description="Model that wrote the words, as the router reports it.")
    grounding: GroundingReport = Field(default_factory=GroundingReport)
    notice: str | None = Field(None, description="Why the answer is not from the group asked for, if it is not.")
    intent: Intent | None = None
    proposal: TradeProposal | None = None
