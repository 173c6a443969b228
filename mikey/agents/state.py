"""Typed state and runtime context of the chat graph."""

from __future__ import annotations

import operator
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Literal, Protocol, TypedDict

from mikey.agents.dialogue import Dialogue
from mikey.domain import Answer, Facts, GroundingReport, Intent, NewsItem, TradeProposal
from mikey.market.feed import PriceFeed
from mikey.router.chat_model import ChatModel
from mikey.settings import Settings

if TYPE_CHECKING:
    from mikey.execution.executor import Executor
    from mikey.memory.store import VectorMemory


class Turn(TypedDict, total=False):
    """One message of the conversation as kept in the thread's checkpoint."""

    role: Literal["user", "assistant"]
    content: str
    symbols: list[str]
    group: str | None
    kind: str


class ChatState(TypedDict, total=False):
    """State of a chat thread. ``history`` accumulates across turns; the other fields describe the current turn."""

    message: str
    history: Annotated[list[Turn], operator.add]
    intent: Intent | None
    preferences: dict[str, str]
    facts: Facts | None
    proposal: TradeProposal | None
    draft: str | None
    writer_group: str | None
    writer_model: str | None
    notice: str | None
    grounding: GroundingReport | None
    answer: Answer | None
    awaiting: dict[str, str] | None
    """The proposal shown to the user and waiting for their reply: its id and digest (kept across turns)."""
    approval: dict[str, str] | None
    assumed: str | None
    """Values this turn's answer assumed (not given in the question); said in the answer's first line."""
    comparison: str | None
    """The computed winners of this turn's comparison, appended to the answer."""
    dialogue: Dialogue | None
    """The last market question's kind, markets and position (kept across turns): what follow-ups refer to."""
    """This turn's decision on ``awaiting``: proposal id and outcome (approved, rejected, pending)."""


class NewsSource(Protocol):
    """Where a chat turn reads recent headlines (the market store implements it)."""

    def news(self, start: datetime, end: datetime, *, symbol: str | None = None) -> list[NewsItem]: ...


@dataclass
class ChatContext:
    """What graph nodes use, built once at the composition root (CLI, API) and passed as LangGraph runtime context.

    ``stream``: the analyze step streams grounded sentences through LangGraph's custom stream (``stream_turn``).
    ``deadline``: the ``time.monotonic()`` by which the turn's model calls must have answered (``run_turn`` and
    ``stream_turn`` set it from ``turn_deadline_seconds``); past it, the offline writer answers from the facts.
    """

    settings: Settings
    feed: PriceFeed
    chat_model: ChatModel
    group: str | None = None
    memory: VectorMemory | None = None
    news: NewsSource | None = None
    user_id: str | None = None
    stream: bool = False
    deadline: float | None = None
    executor: Executor | None = None
    """Proposals, gates and the broker; None: trades are proposed but cannot be stored or approved here."""

    @property
    def user(self) -> str:
        return self.user_id or self.settings.user_id
