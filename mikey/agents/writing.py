"""One way to write a grounded answer, for the chat (streamed or not) and the analysis pipeline.

A model drafts the words over the facts; every number in them is checked against the facts (``grounding``); one rule
decides what the reader gets: a draft whose share of verified numbers is below ``min_grounding`` is replaced by the
offline writer, which renders the facts themselves (typed, never parsed back from the prompt). So is a draft that never
arrives: a failed provider, a deadline passed, a stream cut mid-answer, a draft with no words left after grounding.

Streamed, a sentence is shown as soon as it is complete and vouched for: grounded, with no number that matched no
fact, and the draft's score so far at or above the bar. From the first sentence that cannot be vouched for, the rest
is held back until the draft ends; then it is shown (the draft passed) or the shown part is withdrawn (``Reset``) and
the offline writer's text follows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mikey.agents import grounding
from mikey.domain import Facts, GroundingReport
from mikey.errors import ProviderError
from mikey.router.chat_model import ChatModel, Completion, DoneEvent, ErrorEvent, TokenEvent
from mikey.router.providers import describe

OFFLINE = "offline"
FACTS_ECHO = "<facts>"  # small models echo the facts block after their words; it is cut, never shown


@dataclass(frozen=True)
class Reset:
    """A streamed answer withdraws the words shown so far; the offline writer's follow."""

    reason: str


Shown = Callable[[str | Reset], None]
"""Where a streamed answer's pieces go, in order: grounded text, or a ``Reset``."""


@dataclass
class Written:
    """A grounded answer: its words, how its numbers matched, who wrote it, and why, when it is not the model asked."""

    text: str
    grounding: GroundingReport
    group: str
    model: str
    notes: list[str] = field(default_factory=list)


def write_grounded(chat_model: ChatModel, messages: list[dict[str, Any]], facts: Facts, *, min_grounding: float,
                   role: str = "analyze", group: str | None = None, thread_id: str | None = None,
                   deadline: float | None = None, show: Shown | None = None) -> Written:
    """The grounded words about ``facts``: a model's draft if it passes ``min_grounding``, else the offline writer's.

    With ``show``, the draft is streamed and each piece the reader may see is passed to it as it is vouched for.
    """
    if show is None:
        return _written(chat_model, messages, facts, min_grounding=min_grounding, role=role, group=group,
                        thread_id=thread_id, deadline=deadline)
    return _streamed(chat_model, messages, facts, min_grounding=min_grounding, role=role, group=group,
                     thread_id=thread_id, deadline=deadline, show=show)


def offline_answer(chat_model: ChatModel, messages: list[dict[str, Any]], facts: Facts, *, role: str = "analyze",
                   thread_id: str | None = None, why: str | None = None) -> Written:
    """The offline writer's rendering of ``facts`` (typed, handed to it with the call), grounded like any draft."""
    done = chat_model.complete(messages, role=role, group=OFFLINE, only=True, thread_id=thread_id, facts=facts)
    text, report = grounding.ground(done.text, facts)
    return Written(text, report, done.group, done.model, [why] if why else [])


def _written(chat_model: ChatModel, messages: list[dict[str, Any]], facts: Facts, *, min_grounding: float, role: str,
             group: str | None, thread_id: str | None, deadline: float | None) -> Written:
    try:
        done = chat_model.complete(messages, role=role, group=group, thread_id=thread_id, deadline=deadline,
                                   facts=facts)
    except ProviderError as exc:
        return offline_answer(chat_model, messages, facts, role=role, thread_id=thread_id,
                              why=_failed(group, exc))
    text, report = grounding.ground(done.text.split(FACTS_ECHO)[0].strip(), facts)
    return _judged(chat_model, messages, facts, Written(text, report, done.group, done.model, _served(done)),
                   min_grounding=min_grounding, role=role, thread_id=thread_id)


def _judged(chat_model: ChatModel, messages: list[dict[str, Any]], facts: Facts, draft: Written, *,
            min_grounding: float, role: str, thread_id: str | None) -> Written:
    """The one rule: a model's draft below the bar, or with no words, gives way to the offline writer."""
    notes = draft.notes + ([claims] if (claims := _claims_note(draft.grounding)) else [])
    if draft.group == OFFLINE:
        return Written(draft.text, draft.grounding, draft.group, draft.model, notes)
    if not draft.text.strip():
        why = f"The {draft.group} model returned no words; the offline writer rendered the facts instead."
    elif draft.grounding.score < min_grounding:
        report = draft.grounding
        why = (f"The {draft.group} draft stated {len(report.removed)} of {report.checked} numbers that match no fact; "
               "the offline writer rendered the facts instead.")
    else:
        return Written(draft.text, draft.grounding, draft.group, draft.model, notes)
    out = offline_answer(chat_model, messages, facts, role=role, thread_id=thread_id)
    out.grounding.claims = draft.grounding.claims + out.grounding.claims
    out.notes = notes + [why]
    return out


def _streamed(chat_model: ChatModel, messages: list[dict[str, Any]], facts: Facts, *, min_grounding: float, role: str,
              group: str | None, thread_id: str | None, deadline: float | None, show: Shown) -> Written:
    grounder = grounding.StreamGrounder(facts, stop=FACTS_ECHO)
    shown = False
    held: list[str] = []  # grounded sentences not yet vouched for, and every sentence after the first of them
    served: Completion | None = None
    failure: str | None = None

    def offer(piece: str, unverified_before: int) -> None:
        nonlocal shown
        vouched = len(grounder.report.removed) == unverified_before and grounder.report.score >= min_grounding
        if held or not vouched:
            held.append(piece)
        elif piece:
            show(piece)
            shown = True

    try:
        for event in chat_model.stream(messages, role=role, group=group, thread_id=thread_id, deadline=deadline,
                                       facts=facts):
            if isinstance(event, TokenEvent):
                before = len(grounder.report.removed)
                if piece := grounder.feed(event.text):
                    offer(piece, before)
            elif isinstance(event, DoneEvent):
                served = event.completion
            elif isinstance(event, ErrorEvent):
                failure = (f"The {event.group} model stopped mid-answer ({event.message}); the offline writer "
                           "rendered the facts instead.")
    except ProviderError as exc:
        failure = _failed(group, exc)
    if failure is None and served is not None:
        before = len(grounder.report.removed)
        if rest := grounder.finish():
            offer(rest, before)
        draft = Written(grounder.text.strip(), grounder.report, served.group, served.model, _served(served))
        out = _judged(chat_model, messages, facts, draft, min_grounding=min_grounding, role=role, thread_id=thread_id)
        if out.group == draft.group:  # the draft stands: what was held back is shown now
            for piece in held:
                show(piece)
            return out
        failure = out.notes[-1]
    else:
        failure = failure or (f"The {group or 'requested'} model's stream ended without an answer; the offline writer "
                              "rendered the facts instead.")
        out = offline_answer(chat_model, messages, facts, role=role, thread_id=thread_id, why=failure)
    if shown:
        show(Reset(failure))
    show(out.text)
    return out


def _served(done: Completion) -> list[str]:
    """Why the words are not the requested group's: a budget kept it out, or it did not answer."""
    if done.notice:
        return [f"{done.notice} {done.group} wrote this instead."]
    if done.group == done.requested_group:
        return []
    own = f"{done.requested_group}: "
    if len(done.failures) == 1 and done.failures[0].startswith(own):
        why = f" ({done.failures[0].removeprefix(own)})"
    else:
        why = f" ({'; '.join(done.failures)})" if done.failures else ""
    return [f"The {done.requested_group} model did not answer{why}; {done.group} wrote this instead."]


def _failed(group: str | None, exc: Exception) -> str:
    return (f"The {group or 'requested'} model gave no answer ({describe(exc)}); the offline writer rendered the "
            "facts instead.")


def _claims_note(report: GroundingReport) -> str | None:
    if not report.claims:
        return None
    return (f"Removed {len(report.claims)} sentence(s) claiming a trade was made or approved: MIKEY executes nothing "
            "from chat.")
