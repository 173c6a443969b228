"""Which markets a piece of text mentions: the symbol tags on news items and social posts.

A tag must be a whole word, so "solution", "resolve", "console" and "Ethan" tag nothing, while "Solana", "bitcoin",
"$SOL", "#ETH", "SOL-PERP", "SOL/USDC" and "BTCUSDT" do. Tickers and names match in any case, because posts are
written in any case ("sol looks heavy"); the names are the aliases of ``market/symbols.py``, so a market added there
is tagged here without a second list.
"""

from __future__ import annotations

import re

from mikey.market.symbols import ALIASES, normalize

# Longest names first, so "solana" is tried before "sol" and "ethereum" before "ether"/"eth".
_NAMES = "|".join(re.escape(name) for name in sorted(ALIASES, key=len, reverse=True))

# A mention: an optional "$" or "#", a name, an optional quote/perp suffix ("-PERP", "/USDC", "USDT"), and no word
# character on either side. \w is Unicode-aware, so letters of any script, digits and "_" all count as "inside a word".
_MENTION = re.compile(
    rf"(?<!\w)[$#]?(?P<mention>(?:{_NAMES})(?:[-/_]?(?:perp|usdc|usdt|usd))?)(?!\w)",
    re.IGNORECASE,
)


def tag_symbols(text: str) -> list[str]:
    """The supported market symbols ``text`` mentions, each once, in order of first mention.

    Args:
        text: A headline, summary or post; plain text (strip HTML first, or tag names would match inside markup).

    Returns:
        Symbols such as ``["SOL", "BTC"]``; empty when no market is mentioned.
    """
    found: list[str] = []
    for match in _MENTION.finditer(text):
        symbol = normalize(match.group("mention"))
        if symbol is not None and symbol not in found:
            found.append(symbol)
    return found
