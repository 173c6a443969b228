"""Test fakes that run through the real LiteLLM Router: a scripted model and a function model.

Swap ``fake_group(group, name, model)`` into a chat model's groups (or put ``install(name, model)``'s params in a
deployment) and the Router calls the fake like any provider, so
fallbacks, retries and the ledger are exercised for real. A scripted reply that is an exception is raised, which is
how tests make a deployment fail.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

PROVIDER = "mikey-fake"

Reply = str | BaseException
_MODELS: dict[str, Any] = {}


class ScriptedModel:
    """Answers with queued replies in order; raises when the queue is empty. Records every call's messages."""

    def __init__(self, replies: Iterable[Reply]) -> None:
        self.replies: deque[Reply] = deque(replies)
        self.calls: list[list[dict[str, Any]]] = []

    def __call__(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> str:
        self.calls.append(messages)
        if not self.replies:
            raise AssertionError("ScriptedModel has no reply left for this call")
        reply = self.replies.popleft()
        if isinstance(reply, BaseException):
            raise reply
        return reply


class FunctionModel:
    """Answers with ``fn(messages, tools)``. Records every call's messages."""

    def __init__(self, fn: Callable[[list[dict[str, Any]], list[dict[str, Any]] | None], str]) -> None:
        self.fn = fn
        self.calls: list[list[dict[str, Any]]] = []

    def __call__(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> str:
        self.calls.append(messages)
        return self.fn(messages, tools)


def install(name: str, model: ScriptedModel | FunctionModel) -> dict[str, Any]:
    """Make ``model`` answer for ``mikey-fake/<name>``; returns the deployment params to put in a group."""
    from mikey.router.providers import register, registered, text_provider_class, word_count

    if registered(PROVIDER) is None:

        class FakeProvider(text_provider_class()):
            def generate(self, model, messages, params):
                text = _MODELS[model](messages, params.get("tools"))
                return text, word_count(messages), len(text.split())

        register(PROVIDER, FakeProvider())
    _MODELS[name] = model
    return fake_deployment(name)


def fake_deployment(name: str) -> dict[str, Any]:
    return {"model": f"{PROVIDER}/{name}"}


def fake_group(group: str, name: str, model: ScriptedModel | FunctionModel, family: str = "other") -> Any:
    """A ``GroupStatus`` for ``group`` whose one deployment is ``model``; swap it into the groups of a chat model."""
    from mikey.router.groups import Deployment, GroupStatus

    deployment = Deployment(id=f"{group}#fake", group=group, params=install(name, model), family=family,  # type: ignore[arg-type]
                            usable=True, reason="fake", description=f"fake {name}")
    return GroupStatus(group, [deployment], f"fake {name}")
