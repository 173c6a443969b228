"""Chat messages that remember which versioned prompt they were rendered from.

``Prompt.render`` (``mikey/agents/prompts.py``) returns ``PromptMessages``; the chat model reads ``prompt_of`` and
writes the prompt's ``name@version`` into every ledger row of the call, so no call site passes it by hand. The
messages are still a plain ``list`` of dicts to every provider, cache and fake.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class PromptMessages(list[dict[str, Any]]):
    """Messages rendered from one prompt version; ``prompt`` is ``name@version`` (e.g. ``chat.analyze@2``).

    Extending them (``messages + [reply, repair]``, as a structured-output repair does) keeps the tag: the longer
    conversation is still that prompt's call.
    """

    def __init__(self, messages: Iterable[dict[str, Any]], prompt: str) -> None:
        super().__init__(messages)
        self.prompt = prompt

    def __add__(self, other: list[dict[str, Any]]) -> PromptMessages:  # type: ignore[override]
        return PromptMessages([*self, *other], self.prompt)


def prompt_of(messages: list[dict[str, Any]]) -> str | None:
    """The ``name@version`` the messages were rendered from, or ``None`` for messages written by hand."""
    return messages.prompt if isinstance(messages, PromptMessages) else None
