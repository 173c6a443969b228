"""Rule parser for chat messages: intent kind and market symbols.

It needs no model, so it is both the fallback and the cross-check of the LLM parser that later deepens the
``understand`` step. Tickers are recognised in any case when they are known ("sol", "Solana", "SOL-PERP", "$sol");
an unknown ticker is recognised when it is written like one (all capitals, a ``$`` prefix, or a ``-PERP`` suffix),
so "How is DOGE doing?" gets a clear "not covered" answer instead of a guess.
"""

from __future__ import annotations

import re

from mikey.domain import Intent, IntentKind
from mikey.market import symbols

_WORD = re.compile(r"\$?[A-Za-z][A-Za-z0-9]*(?:[-/](?:PERP|USDC|USDT|USD))?", re.IGNORECASE)
_GREETING = re.compile(r"^\s*(hi|hello|hey|gm|yo|good (morning|afternoon|evening)|thanks|thank you)\b", re.IGNORECASE)

# Capitalised words that are not markets: indicators, currencies, pronouns, common acronyms.
NOT_TICKERS = frozenset(
    "I A OK AI RSI MACD ATR BB EMA SMA VWAP OBV ADX USD USDC USDT PNL VAR CVAR TA MIKEY ETF FOMC CPI US EU UK "
    "API CLI LLM GPT TP SL ATH ATL DCA FUD FOMO IMO TL DR PM AM UTC".split()
)

_KINDS: tuple[tuple[IntentKind, re.Pattern[str]], ...] = (
    ("trade", re.compile(r"\b(open|close|buy|sell|go long|go short|place|enter|exit)\b|\b\d+x\b", re.I)),
    ("risk", re.compile(r"\b(risk|liquidat\w*|var|margin|leverage|drawdown)\b", re.I)),
    ("alert", re.compile(r"\b(alert|notify|tell me when)\b", re.I)),
    ("portfolio", re.compile(r"\b(portfolio|my positions?|holdings)\b", re.I)),
    ("compare", re.compile(r"\b(compare|versus|vs\.?|against)\b", re.I)),
    ("price", re.compile(r"\b(price|trading at|worth|cost|quote)\b", re.I)),
    ("explain", re.compile(r"\b(why|explain|what does|what is|meaning)\b", re.I)),
)


def parse(message: str, previous_symbols: list[str] | None = None) -> Intent:
    """Intent of ``message``. With no market named, a follow-up inherits ``previous_symbols`` ("and its RSI?")."""
    found: list[str] = []
    unknown: list[str] = []
    shouting = message.isupper()  # in an all-capitals message, capitals say nothing about tickers
    for match in _WORD.finditer(message):
        token = match.group(0)
        symbol = symbols.normalize(token)
        if symbol is not None:
            if symbol not in found:
                found.append(symbol)
        elif _looks_like_ticker(token, shouting) and _ticker_name(token) not in unknown:
            unknown.append(_ticker_name(token))
    if not found and not unknown and previous_symbols and not _GREETING.match(message):
        found = list(previous_symbols)
    if not found and not unknown:
        kind: IntentKind = "smalltalk" if _GREETING.match(message) else "unknown"
        return Intent(kind=kind)
    kind = next((k for k, pattern in _KINDS if pattern.search(message)), "analysis")
    if kind == "analysis" and len(found) > 1:
        kind = "compare"
    return Intent(kind=kind, symbols=found, unknown_symbols=unknown)


def _looks_like_ticker(token: str, shouting: bool) -> bool:
    bare = re.sub(r"[-/](PERP|USDC|USDT|USD)$", "", token.lstrip("$"), flags=re.IGNORECASE)
    if not bare.isalpha() or not 2 <= len(bare) <= 10 or bare.upper() in NOT_TICKERS:
        return False
    return token.startswith("$") or (bare.isupper() and not shouting) or bare != token.lstrip("$")


def _ticker_name(token: str) -> str:
    return re.sub(r"[-/](PERP|USDC|USDT|USD)$", "", token.lstrip("$"), flags=re.IGNORECASE).upper()
