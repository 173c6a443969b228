"""Grounding: every number a model writes must trace to a computed fact, or it leaves the answer.

A number matches a fact when it equals the fact after the rounding the writer visibly used (``21.8`` matches
21.780764, ``22`` matches 21.78, ``20`` does not), with ``k``/``M``/``B`` suffixes and thousands separators
understood, and a leverage such as ``5x`` read as 5. Unsigned numbers are compared by magnitude (a writer says
"down 3.1%"); signed ones by value. An ISO date matches only a fact's as-of date. Indicator parameters (the 14 of
"RSI(14)") match only where they read as parameters. Anything else is replaced by ``UNVERIFIED`` and listed in the
report.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date

from mikey.domain import Facts, GroundingReport

UNVERIFIED = "[unverified]"

_DATE = r"\d{4}-\d{2}-\d{2}"
_NUMBER = r"[-+\u2212]?\$?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:\s?[kKMB](?![A-Za-z]))?(?:%|x(?![A-Za-z]))?"
_TOKEN = re.compile(rf"(?<![\w.])(?:(?P<date>{_DATE})|(?P<num>{_NUMBER}))(?![\w]|\.\d)")
_SCALE = {"k": 1e3, "K": 1e3, "M": 1e6, "B": 1e9}


def _parse(token: str) -> tuple[float, float, bool]:
    """(value, rounding tolerance, signed?) of a number token as written."""
    text = token.replace("\u2212", "-").replace("$", "").replace(",", "").rstrip("%x").strip()
    signed = text[:1] in "+-"
    scale = 1.0
    if text[-1:] in _SCALE:
        scale = _SCALE[text[-1]]
        text = text[:-1].strip()
    decimals = len(text.split(".")[1]) if "." in text else 0
    return float(text) * scale, 0.5 * 10.0**-decimals * scale + 1e-12, signed


def _matches(token: str, values: Iterable[float]) -> bool:
    number, tolerance, signed = _parse(token)
    for value in values:
        if signed and abs(number - value) <= tolerance:
            return True
        if not signed and abs(abs(number) - abs(value)) <= tolerance:
            return True
    return False


def fact_values(facts: Facts) -> list[float]:
    """Every fact's value: the numbers a narrative may state anywhere."""
    return [f.value for f in facts.numbers()]


def _in_parameter_context(text: str, start: int, end: int) -> bool:
    """True where a plain integer reads as an indicator parameter: "RSI(14)", "(12,26,9)", "20-day", "14 periods".

    Parameters are small integers that would otherwise verify any invented "up 12%"; they count only here.
    """
    before, after = text[max(0, start - 1):start], text[end:end + 8].lower()
    return before in ("(", ",") or re.match(r"[-\s](day|period|bar)", after) is not None


def fact_dates(facts: Facts) -> set[date]:
    return {f.as_of.date() for f in facts.numbers()}


TRADE_CLAIM_REMOVED = "[removed: MIKEY makes no trades from chat]"
_VERB = r"(?:executed|approved|placed|filled|opened|submitted|bought|sold|entered|closed)"
_TRADE_CLAIM = re.compile(
    rf"\b(?:has|have|had|was|were|is|been)\s+(?:been\s+|now\s+|just\s+)?{_VERB}\b[^.!?]{{0,40}}\b"
    r"(?:trade|order|position|proposal|long|short)s?\b"
    rf"|\b(?:trade|order|position|proposal|user|you)s?\b[^.!?]{{0,30}}\b(?:has|have|had|was|were|is)\s+"
    rf"(?:been\s+|now\s+|just\s+)?{_VERB}\b"
    rf"|\b(?:i|we|mikey)\s+(?:have\s+|has\s+|just\s+|will\s+|am\s+|are\s+)*(?:{_VERB}|open|opening|place|placing|"
    r"execute|executing|buy|buying|sell|selling)\b"
    rf"|\b(?:done|ok|okay)\s*[:,!-]\s*{_VERB}\b"
    r"|\b(?:opening|placing|executing|entering)\b[^.!?]{0,40}\b(?:now|for you|immediately)\b",
    re.IGNORECASE)
_SENTENCE = re.compile(r"(?:[^.!?\n]|[.!?](?!\s|$))+(?:[.!?](?=\s|$)|\n|$)|\n")


def strip_trade_claims(text: str) -> tuple[str, list[str]]:
    """Remove every sentence that claims a trade was made, approved or is under way.

    No chat turn executes or approves anything, so such a sentence is false whatever model wrote it (or whatever
    injected text it obeyed). Returns the text and the removed sentences.
    """
    removed: list[str] = []

    def check(match: re.Match[str]) -> str:
        sentence = match.group(0)
        if _TRADE_CLAIM.search(sentence):
            removed.append(sentence.strip())
            return sentence[: len(sentence) - len(sentence.lstrip())] + TRADE_CLAIM_REMOVED
        return sentence

    return _SENTENCE.sub(check, text), removed


def drop_repeats(text: str, seen: set[str] | None = None) -> tuple[str, int]:
    """Drop every sentence said before (in ``text``, or in ``seen``, which is updated): small models loop under
    greedy decoding ("The price is 1.0962. The price is 1.0962. ..."). Returns the text and how many were dropped."""
    seen = set() if seen is None else seen
    dropped = 0

    def check(match: re.Match[str]) -> str:
        nonlocal dropped
        key = " ".join(match.group(0).split()).lower()
        if not key:
            return match.group(0)
        if key in seen:
            dropped += 1
            return ""
        seen.add(key)
        return match.group(0)

    return _SENTENCE.sub(check, text), dropped


def ground(text: str, facts: Facts, *, seen: set[str] | None = None) -> tuple[str, GroundingReport]:
    """Return ``text`` with every number that matches no fact replaced by ``UNVERIFIED``, and the report.

    Repeated sentences are dropped first (``drop_repeats``, across calls when ``seen`` is shared), then sentences
    claiming a trade action are removed (``strip_trade_claims``); their numbers are not checked.
    """
    values = fact_values(facts)
    parameters = list(facts.parameters.values())
    dates = fact_dates(facts)
    text, repeated = drop_repeats(text, seen)
    text, claims = strip_trade_claims(text)
    report = GroundingReport(claims=claims, repeated=repeated)

    def check(match: re.Match[str]) -> str:
        token = match.group(0)
        report.checked += 1
        if match.group("date"):
            ok = _is_fact_date(token, dates)
        else:
            ok = _matches(token, values) or (
                token.isdigit()
                and _in_parameter_context(text, match.start(), match.end())
                and _matches(token, parameters)
            )
        if ok:
            report.matched += 1
            return token
        report.removed.append(token)
        return UNVERIFIED

    return _TOKEN.sub(check, text), report


def _is_fact_date(token: str, dates: set[date]) -> bool:
    try:
        return date.fromisoformat(token) in dates
    except ValueError:
        return False


_SENTENCE_END = re.compile(r"[.!?](?=\s)|\n")


class StreamGrounder:
    """Grounds a streamed narrative sentence by sentence, so no unchecked number is ever shown.

    ``feed`` takes the model's text as it arrives and returns the grounded text of every sentence completed so far;
    ``finish`` returns the rest. A sentence ends at ``.``, ``!`` or ``?`` followed by whitespace, or at a newline, so a
    decimal point never ends one. Once ``stop`` is seen (the echo of a facts block), the rest is dropped.
    """

    def __init__(self, facts: Facts, stop: str = "<facts>") -> None:
        self.facts = facts
        self.stop = stop
        self.report = GroundingReport()
        self.text = ""
        self._pending = ""
        self._stopped = False
        self._seen: set[str] = set()

    def feed(self, piece: str) -> str:
        if self._stopped:
            return ""
        self._pending += piece
        if self.stop in self._pending:
            self._pending = self._pending.split(self.stop)[0]
            self._stopped = True
            return self._emit(len(self._pending))
        ends = list(_SENTENCE_END.finditer(self._pending))
        return self._emit(ends[-1].end()) if ends else ""

    def finish(self) -> str:
        return self._emit(len(self._pending))

    def _emit(self, upto: int) -> str:
        chunk, self._pending = self._pending[:upto], self._pending[upto:]
        if not chunk:
            return ""
        if not self.text:
            chunk = chunk.lstrip()
        grounded, part = ground(chunk, self.facts, seen=self._seen)
        self.report.repeated += part.repeated
        self.report.checked += part.checked
        self.report.matched += part.matched
        self.report.removed.extend(part.removed)
        self.report.claims.extend(part.claims)
        self.text += grounded
        return grounded
