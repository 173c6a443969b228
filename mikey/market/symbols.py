"""Market symbols MIKEY covers and the names people use for them ("solana", "sol", "SOL-PERP", "$SOL")."""

from __future__ import annotations

import re

from mikey.errors import UnknownSymbol

SUPPORTED: tuple[str, ...] = ("BTC", "ETH", "SOL")

ALIASES: dict[str, str] = {
    "btc": "BTC", "bitcoin": "BTC", "xbt": "BTC",
    "eth": "ETH", "ether": "ETH", "ethereum": "ETH",
    "sol": "SOL", "solana": "SOL",
}

_DECORATIONS = re.compile(r"^\$|(?:[-/_ ]?(?:perp|usdc|usdt|usd))$", re.IGNORECASE)


def normalize(name: str) -> str | None:
    """The supported symbol ``name`` stands for, or None. Accepts any case, '$SOL', 'SOL-PERP', 'SOL/USD'."""
    base = _DECORATIONS.sub("", name.strip())
    base = _DECORATIONS.sub("", base)  # "SOL-PERP-USD" style double suffixes
    return ALIASES.get(base.lower())


def resolve(name: str) -> str:
    """Like ``normalize`` but raises ``UnknownSymbol`` naming what is supported."""
    symbol = normalize(name)
    if symbol is None:
        raise UnknownSymbol(name.strip(), list(SUPPORTED))
    return symbol
