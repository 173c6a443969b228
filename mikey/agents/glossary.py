"""The glossary MIKEY explains terms from: definitions with their sources, shipped as data (``data/glossary.yaml``).

A question is matched to a term by meaning through the vector store (the glossary is indexed into its ``glossary``
collection on first use) when memory is on, else by typo-tolerant matching of the term's names (rapidfuzz). When the
question names a market and the term is an indicator, the answer adds that market's current value, computed by code.
"""

from __future__ import annotations

import re
from functools import cache
from importlib.resources import files
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict

MIN_SIMILARITY = 0.2
MIN_MARGIN = 0.03
"""A recalled entry answers an explain question (one that names no term and no market) when its cosine similarity
is at least MIN_SIMILARITY and beats the runner-up by MIN_MARGIN: MiniLM's similarities for a paraphrase run low
("why do longs pay the shorts every eight hours?" -> funding rate 0.22, the next 0.18), its ranking is what holds."""
MIN_FUZZY = 85
"""rapidfuzz score (0-100) a term name needs in the question when matching without the vector store."""


class GlossaryEntry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    term: str
    name: str
    aliases: list[str] = []
    definition: str
    source: str
    fact: str | None = None

    @property
    def document(self) -> str:
        """What is indexed: the names and the definition, so a question matches on either."""
        return f"{self.name} ({self.term}; {', '.join(self.aliases)}): {self.definition}"


@cache
def entries() -> tuple[GlossaryEntry, ...]:
    raw = yaml.safe_load((files("mikey.agents") / "data" / "glossary.yaml").read_text(encoding="utf-8"))
    return tuple(GlossaryEntry.model_validate(item) for item in raw)


def _by_document() -> dict[str, GlossaryEntry]:
    return {e.document: e for e in entries()}


def _fuzzy(message: str) -> GlossaryEntry | None:
    from rapidfuzz import fuzz

    text = message.lower()
    best, best_score = None, 0.0
    for entry in entries():
        for name in (entry.term, entry.name, *entry.aliases):
            name = name.lower()
            if len(name) <= 4:  # short names (RSI, ATR, VaR) must appear as a word: fuzzy matching them is noise
                score = 100.0 if re.search(rf"(?<![a-z]){re.escape(name)}(?![a-z])", text) else 0.0
            else:
                score = fuzz.partial_ratio(name, text)
            if score > best_score:
                best, best_score = entry, score
    return best if best_score >= MIN_FUZZY else None


_indexed: set[int] = set()


def lookup(message: str, memory: Any = None, *, market_named: bool = False) -> GlossaryEntry | None:
    """The entry the question asks about, or None. A term named outright wins; else, when the question names no
    market ("why is ETH moving?" is about the market, not a term), the vector store's clear best match."""
    named = _fuzzy(message)
    if named is not None or market_named or memory is None or not hasattr(memory, "index_glossary"):
        return named
    from mikey.errors import MikeyError
    from mikey.memory.store import GLOSSARY

    try:
        if id(memory) not in _indexed:
            memory.index_glossary([e.document for e in entries()])
            _indexed.add(id(memory))
        hits = memory.recall(message, collections=(GLOSSARY,), k=2)
    except MikeyError:
        return None
    if not hits or hits[0].similarity < MIN_SIMILARITY:
        return None
    if len(hits) > 1 and hits[0].similarity - hits[1].similarity < MIN_MARGIN:
        return None
    return _by_document().get(hits[0].text)


def explain(entry: GlossaryEntry, symbol: str | None = None, indicators: Any = None) -> str:
    """The definition, its source, and the market's current value of the term when there is one."""
    text = f"{entry.name} ({entry.term}): {entry.definition} Source: {entry.source}"
    if symbol and indicators is not None and entry.fact and hasattr(indicators, entry.fact):
        value = getattr(indicators, entry.fact)
        text += (f"\n{symbol} now: {_fact_label(entry.fact)} {value:,.4f} (daily bars, as of "
                 f"{indicators.as_of:%Y-%m-%d}).")
    return text


def _fact_label(fact: str) -> str:
    return {"rsi_14": "RSI(14)", "macd": "MACD line", "bb_middle": "Bollinger middle band", "atr_14": "ATR(14)"}.get(
        fact, fact)
