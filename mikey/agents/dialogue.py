"""Dialogue state: what a thread is talking about, so a follow-up re-asks the same question with its change.

After each turn the thread keeps the last question's kind, markets and the position under discussion
(``Dialogue``). A follow-up ("and for sol?", "what if I use 10x instead?", "compare that with btc", "which one has
the higher rsi?") is read against it: what the new message states replaces, what it leaves out is kept. A message
that is a question of its own (it names its own kind, or is a greeting) starts afresh.
"""

from __future__ import annotations

import re
from typing import TypedDict

from mikey.domain import Intent

CARRIED_KINDS = frozenset({"price", "analysis", "compare", "risk", "explain"})
"""Kinds a follow-up may re-ask; a trade is never re-proposed from a follow-up (the user writes an order)."""

_CUE = re.compile(
    r"^\s*(?:and|&|also|ok(?:ay)?,?\s+(?:and|now|what about)|so|then|now)\b|\b(?:what|how)\s+about\b"
    r"|\bsame\s+(?:for|with)\b|\binstead\b|\bwhat\s+if\b|\bcompare\s+(?:that|it|this|them)\b"
    r"|\bwhich\s+(?:one|of\s+them|is|has)\b|^\s*(?:y|et|und|e)\s+(?:para|pour|für|fur)\b", re.I)
_COMPARE_CUE = re.compile(r"\bcompare\b|\bversus\b|\bvs\.?\b|\bwhich\s+(?:one|of\s+them|is|has)\b", re.I)


class Dialogue(TypedDict, total=False):
    kind: str
    markets: list[str]
    side: str | None
    leverage: float | None
    collateral: float | None
    risk_tolerance: str | None


def is_follow_up(message: str) -> bool:
    return bool(_CUE.search(message)) and len(message.split()) <= 14


def follow_up(intent: Intent, message: str, last: Dialogue | None) -> tuple[Intent, str | None]:
    """``intent`` completed from the thread's last question when ``message`` is a follow-up to it; and a note
    saying what was carried over (None when nothing was)."""
    if not last or not last.get("kind") or last["kind"] not in CARRIED_KINDS or not is_follow_up(message):
        return intent, None
    if intent.kind in ("trade", "portfolio", "alert") or intent.unknown_symbols:
        return intent, None
    update: dict[str, object] = {}
    markets = list(intent.symbols)
    last_markets = list(last.get("markets") or [])
    kind = last["kind"]
    if _COMPARE_CUE.search(message):
        kind = "compare"
        markets = list(dict.fromkeys(last_markets + markets))
    elif not markets:
        markets = last_markets
    if kind == "compare" and len(markets) < 2:
        kind = "analysis"
    update.update(kind=kind, symbols=markets)
    carried = []
    if kind == "risk":
        for name in ("side", "leverage", "collateral"):
            if getattr(intent, name) is None and last.get(name) is not None:
                update[name] = last[name]
                carried.append(name)
    if intent.risk_tolerance is None and last.get("risk_tolerance"):
        update["risk_tolerance"] = last["risk_tolerance"]
    changed = intent.model_copy(update=update)
    note = f"Follow-up: the same {kind} question" + (f" with your earlier {', '.join(carried)}" if carried else "")
    return changed, note + "."


def remember(intent: Intent, last: Dialogue | None) -> Dialogue | None:
    """The dialogue state after a turn with ``intent`` (unchanged by turns that ask nothing about a market)."""
    if intent.kind not in CARRIED_KINDS or not intent.symbols:
        return last
    return Dialogue(kind=intent.kind, markets=list(intent.symbols), side=intent.side, leverage=intent.leverage,
                    collateral=intent.collateral, risk_tolerance=intent.risk_tolerance)
