"""What a case runs against, in one cell: a prompt (one raw call through the router), the understand node, a whole
chat turn, or a code engine. Every model call goes through MIKEY's router, so the ledger records its tokens and cost
and budgets apply; a sample's calls carry its own thread id, which is how its tokens and cost are read back.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from mikey.domain import Answer, NewsItem, Recall
from mikey.errors import InvalidInput, MikeyError
from mikey.evals.records import Cell
from mikey.evals.suite import TargetSpec
from mikey.settings import Settings


@dataclass
class TargetResult:
    """A target's output (JSON-ready) and what producing it took."""

    output: Any
    model: str | None = None
    latency_s: float = 0.0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def prompt_ref(name: str, version: int | None) -> str:
    """``name@version`` as a cell names it (``chat/analyze@2``); no version: the current file's."""
    return name if version is None else f"{name}@{version}"


def load_versioned_prompt(ref: str, prompts_dir: Path | None = None) -> Any:
    """The prompt ``name@version``: ``<name>@<version>.yaml`` next to ``<name>.yaml``, or ``<name>.yaml`` itself when
    its version is the one asked for. Raises ``InvalidInput`` naming the versions that exist."""
    from mikey.agents.prompts import bundled_prompts, load_prompt
    from mikey.errors import ConfigError

    name, _, version = ref.partition("@")
    current = load_prompt(name, prompts_dir)
    if not version or int(version) == current.version:
        return current
    folder = bundled_prompts() if prompts_dir is None else prompts_dir
    try:
        prompt = load_prompt(f"{name}@{version}", prompts_dir)
    except ConfigError:
        parent = folder / name.rpartition("/")[0] if "/" in name else folder
        stem = name.rpartition("/")[2]
        others = sorted(p.name.removeprefix(f"{stem}@").removesuffix(".yaml") for p in parent.iterdir()
                        if p.name.startswith(f"{stem}@"))
        raise InvalidInput(f"prompt {name} has no version {version} (current: {current.version}; others: "
                           f"{', '.join(others) or 'none'})") from None
    if prompt.version != int(version):
        raise InvalidInput(f"prompt file {name}@{version}.yaml declares version {prompt.version}")
    return prompt


class NotesMemory:
    """A vector memory that recalls the case's notes and keeps nothing: how a case puts text in a tool result."""

    def __init__(self, notes: Sequence[str]) -> None:
        self._notes = list(notes)

    def recall(self, query: str, **_: Any) -> list[Recall]:
        now = datetime.now(UTC)
        return [Recall(collection="conversations", text=n, similarity=0.9, score=0.9, stored_at=now)
                for n in self._notes]

    def preferences(self, user_id: str) -> dict[str, str]:
        return {}

    def set_preference(self, user_id: str, key: str, value: str) -> None:
        return None

    def remember_turn(self, **_: Any) -> None:
        return None

    def remember_news(self, items: Iterable[NewsItem]) -> list[str]:
        return []

    def remember_insight(self, *_: Any, **__: Any) -> None:
        return None

    def close(self) -> None:
        return None


class CaseNews:
    """The case's headlines as the chat's news source (published an hour before the market's clock)."""

    def __init__(self, items: Sequence[dict[str, Any]], now: datetime) -> None:
        self._items = [NewsItem(id=f"case-{i}", source=str(item.get("source") or "eval"), title=str(item["title"]),
                                url=f"https://example.invalid/{i}", summary=str(item.get("summary") or ""),
                                published_at=now - timedelta(hours=1), symbols=list(item.get("symbols") or []))
                       for i, item in enumerate(items)]

    def news(self, start: datetime, end: datetime, *, symbol: str | None = None) -> list[NewsItem]:
        return [n for n in self._items if symbol is None or not n.symbols or symbol in n.symbols]


class Targets:
    """Runs targets for one eval run: one router model and ledger, one chat graph, one executor (paper broker) in
    the run's own home, so an eval never touches the user's positions."""

    def __init__(self, settings: Settings, *, chat_model: Any, ledger: Any, feed: Any, home: Path) -> None:
        self.settings = settings
        self.chat_model = chat_model
        self.ledger = ledger
        self.feed = feed
        self.home = home
        self._graph: Any = None
        self._executor: Any = None
        self._resources: list[Any] = []

    def close(self) -> None:
        for closer in reversed(self._resources):
            closer()
        self._resources.clear()

    # -- usage read back from the ledger ----------------------------------------------------------------------------
    def usage(self, thread_id: str) -> dict[str, Any]:
        calls = [c for c in self.ledger.calls() if c.thread_id == thread_id]
        served = [c for c in calls if c.outcome == "ok"]
        return {"tokens_in": sum(c.tokens_in for c in calls), "tokens_out": sum(c.tokens_out for c in calls),
                "cost_usd": sum(c.cost_usd for c in calls), "model": served[-1].model if served else None}

    # -- dispatch ------------------------------------------------------------------------------------------------------
    def run(self, spec: TargetSpec, cell: Cell, case_input: Any, thread_id: str) -> TargetResult:
        started = time.perf_counter()
        try:
            if spec.kind == "prompt":
                result = self._prompt(spec, cell, case_input, thread_id)
            elif spec.kind == "node":
                result = self._understand(cell, case_input, thread_id)
            elif spec.kind == "chat":
                result = self._chat(cell, case_input, thread_id)
            else:
                result = self._engine(spec, case_input)
        except MikeyError as exc:
            result = TargetResult(output=None, error=f"{type(exc).__name__}: {exc}")
        result.latency_s = time.perf_counter() - started
        if spec.kind != "engine" and spec.kind != "prompt":
            used = self.usage(thread_id)
            result.tokens_in, result.tokens_out, result.cost_usd = used["tokens_in"], used["tokens_out"], used[
                "cost_usd"]
            result.model = result.model or used["model"]
        return result

    def _prompt(self, spec: TargetSpec, cell: Cell, case_input: Any, thread_id: str) -> TargetResult:
        if not isinstance(case_input, dict):
            raise InvalidInput("a prompt target's case input is a mapping of the prompt's variables")
        prompt = load_versioned_prompt(cell.prompt or spec.prompt or "")
        messages = prompt.render(**{k: v if isinstance(v, str) else json.dumps(v) for k, v in case_input.items()})
        done = self.chat_model.complete(messages, role=spec.role, group=cell.group, only=True, thread_id=thread_id,
                                        max_tokens=spec.max_tokens)
        return TargetResult(output=done.text, model=done.model, tokens_in=done.prompt_tokens,
                            tokens_out=done.completion_tokens, cost_usd=done.cost_usd,
                            extra={"cache_hit": done.cache_hit, "group": done.group})

    def _understand(self, cell: Cell, case_input: Any, thread_id: str) -> TargetResult:
        from mikey.agents import understand
        from mikey.agents.chat import OWN_GROUPS

        message, previous = _message(case_input), None
        if isinstance(case_input, dict):
            previous = case_input.get("previous")
        groups = understand.understand_groups(self.chat_model, self.settings) if (
            self.settings.understand_with_model) else []
        groups = [g for g in groups if g == cell.group or (cell.group in OWN_GROUPS and g in OWN_GROUPS)]
        if cell.group not in OWN_GROUPS and cell.group not in groups:
            groups = [cell.group]
        intent, why = understand.understand(message, previous, self.chat_model, groups=groups, thread_id=thread_id)
        data = intent.model_dump(mode="json")
        return TargetResult(output=data, extra={"notice": why})

    def _chat_parts(self) -> tuple[Any, Any]:
        if self._graph is None:
            from contextlib import ExitStack

            from mikey.agents.chat import build_chat_graph, open_checkpointer
            from mikey.execution.executor import Executor
            from mikey.execution.paper import PaperBroker

            home_settings = self.settings.model_copy(update={"home": self.home})
            stack = ExitStack()
            self._resources.append(stack.close)
            self._graph = build_chat_graph(stack.enter_context(open_checkpointer(home_settings)))
            self._executor = Executor(home_settings, broker=PaperBroker.from_settings(home_settings), feed=self.feed)
        return self._graph, self._executor

    def _chat(self, cell: Cell, case_input: Any, thread_id: str) -> TargetResult:
        from mikey.agents.chat import run_turn
        from mikey.agents.state import ChatContext

        graph, executor = self._chat_parts()
        spec = case_input if isinstance(case_input, dict) else {"message": case_input}
        message = _message(spec)
        now = self.feed.quote("BTC").as_of
        context = ChatContext(settings=self.settings, feed=self.feed, chat_model=self.chat_model, group=cell.group,
                              memory=NotesMemory(spec.get("memories") or []) if spec.get("memories") else None,
                              news=CaseNews(spec.get("news") or [], now) if spec.get("news") else None,
                              user_id=thread_id, executor=executor)
        for turn in spec.get("setup") or []:
            run_turn(graph, replace(context, news=None, memory=None), turn, thread_id)
        pending_before = {p.id for p in executor.store.find(user_id=thread_id, status="proposed")}
        answer: Answer = run_turn(graph, context, message, thread_id)
        fills = executor.broker.fills(user_id=thread_id)
        proposals = executor.store.find(user_id=thread_id)
        output = {
            "text": answer.text, "group": answer.group, "model": answer.model, "notice": answer.notice,
            "grounding": answer.grounding.model_dump(mode="json"),
            "facts": answer.facts.model_dump(mode="json") if answer.facts else None,
            "intent": answer.intent.model_dump(mode="json") if answer.intent else None,
            "proposal": answer.proposal.model_dump(mode="json") if answer.proposal else None,
            "executed": bool(fills),
            "new_proposals": [p.id for p in proposals if p.id not in pending_before and p.status == "proposed"],
            "pending_kept": all(p.status == "proposed" for p in proposals if p.id in pending_before),
        }
        return TargetResult(output=output, model=answer.model)

    def _engine(self, spec: TargetSpec, case_input: Any) -> TargetResult:
        from mikey.analysis.sentiment import score_text

        scored = score_text(_message(case_input))
        return TargetResult(output=scored.label, model=f"engine:{scored.method}", extra={"score": scored.score})


def _message(case_input: Any) -> str:
    if isinstance(case_input, str):
        return case_input
    if isinstance(case_input, dict) and isinstance(case_input.get("message"), str):
        return case_input["message"]
    if isinstance(case_input, dict) and isinstance(case_input.get("headline"), str):
        return case_input["headline"]
    raise InvalidInput(f"expected a message (text, or an object with 'message'), not {case_input!r:.80}")
