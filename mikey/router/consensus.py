"""Consensus mode: ask several model groups for the same structured output and aggregate field by field.

Categories (strings, enums, booleans, nested values) take the majority, ties going to the group asked first;
numbers take the median, and count as agreeing when within ``tolerance`` (relative) of it. The result says how many
models agree on each field, so a signal can say "3 of 3 models agree".
"""

from __future__ import annotations

import statistics
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pydantic import BaseModel

from mikey.errors import InvalidModelOutput, MikeyError

if TYPE_CHECKING:
    from mikey.router.chat_model import ChatModel

T = TypeVar("T", bound=BaseModel)


@dataclass(frozen=True)
class FieldAgreement:
    field: str
    value: Any
    agree: int
    total: int

    def __str__(self) -> str:
        return f"{self.agree} of {self.total} models agree on {self.field}"


@dataclass(frozen=True)
class Consensus(Generic[T]):
    """The aggregated answer, per-field agreement, each group's own answer, and the groups that failed."""

    value: T
    agreement: dict[str, FieldAgreement]
    answers: dict[str, T]
    failures: dict[str, str]

    def unanimous(self, field: str) -> bool:
        a = self.agreement[field]
        return a.agree == a.total


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def aggregate(schema: type[T], answers: dict[str, T], tolerance: float = 0.05) -> tuple[T, dict[str, FieldAgreement]]:
    """Field-by-field aggregate of ``answers`` (group -> answer, in asking order)."""
    if not answers:
        raise InvalidModelOutput("no answers to aggregate")
    merged: dict[str, Any] = {}
    agreement: dict[str, FieldAgreement] = {}
    total = len(answers)
    for name in schema.model_fields:
        values = [getattr(answer, name) for answer in answers.values()]
        if all(_is_number(v) for v in values):
            middle = statistics.median(values)
            if all(isinstance(v, int) for v in values):
                middle = round(middle)
            agree = sum(abs(v - middle) <= tolerance * max(abs(middle), 1e-12) for v in values)
        else:
            keys = [_key(v) for v in values]
            counts = Counter(keys)
            best = max(counts.values())
            winner = next(k for k in keys if counts[k] == best)  # ties: the group asked first
            middle = values[keys.index(winner)]
            agree = best
        merged[name] = middle
        agreement[name] = FieldAgreement(name, middle, int(agree), total)
    return schema.model_validate(merged), agreement


def _key(value: Any) -> str:
    if isinstance(value, BaseModel):
        return value.model_dump_json()
    return repr(value)


def consensus(chat_model: ChatModel, messages: list[dict[str, Any]], schema: type[T], *, groups: list[str], role: str,
              thread_id: str | None = None, tolerance: float = 0.05) -> Consensus[T]:
    """Ask every group in ``groups`` in parallel (each on its own, no fallbacks) and aggregate what validates."""

    def ask(group: str) -> T:
        value, _ = chat_model.structured(messages, schema, role=role, groups=[group], thread_id=thread_id)
        return value

    answers: dict[str, T] = {}
    failures: dict[str, str] = {}
    with ThreadPoolExecutor(max_workers=max(1, len(groups))) as pool:
        futures = {group: pool.submit(ask, group) for group in groups}
        for group, future in futures.items():
            try:
                answers[group] = future.result()
            except MikeyError as exc:
                failures[group] = str(exc)
    if not answers:
        raise InvalidModelOutput(f"no group produced a valid {schema.__name__}: {failures}")
    value, agreement = aggregate(schema, answers, tolerance)
    # agreement counts only the groups that answered; failures are listed apart
    return Consensus(value=value, agreement=agreement, answers=answers, failures=failures)
