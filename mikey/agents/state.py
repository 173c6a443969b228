"""Typed state and runtime context of the chat graph."""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Literal, TypedDict

from mikey.domain import Answer, Facts, GroundingReport, Intent
from mikey.market.feed import PriceFeed
from mikey.router.chat_model import ChatModel
from mikey.settings import Settings

if TYPE_CHECKING:
    from mikey.memory.store import VectorMemory


class Turn(TypedDict):
    """One message of the conversation as kept in the thread's checkpoint."""

    role: Literal["user", "assistant"]
    content: str
    symbols: list[str]
    group: str | None


class ChatState(TypedDict, total=False):
    """State of a chat thread. ``history`` accumulates across turns; the other fields describe the current turn."""

    message: str
    history: Annotated[list[Turn], operator.add]
    intent: Intent | None
    facts: Facts | None
    draft: str | None
    writer_group: str | None
    writer_model: str | None
    notice: str | None
    grounding: GroundingReport | None
    answer: Answer | None


@dataclass
class ChatContext:
    """What graph nodes use, built once at the composition root (CLI, API) and passed as LangGraph runtime context."""

    settings: Settings
    feed: PriceFeed
    chat_model: ChatModel
    group: str | None = None
    memory: VectorMemory | None = None
