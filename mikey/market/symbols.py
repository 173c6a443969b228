"""Market symbols MIKEY covers and the names people use for them ("solana", "sol", "SOL-PERP", "$SOL")."""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable

from mikey.errors import InvalidInput, UnknownSymbol

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


def resolve_own(name: str) -> str:
    """The market of the user's own data (``--history FILE.csv``): the supported symbol ``name`` stands for, else
    ``name`` itself, stripped and upper-cased (``spy`` is ``SPY``). Raises ``InvalidInput`` for a blank name."""
    if not name.strip():
        raise InvalidInput("the market name is empty; give the symbol the history is of, e.g. SOL or SPY")
    return normalize(name) or name.strip().upper()


def resolve_symbols(names: Iterable[str], covered: Collection[str]) -> list[str]:
    """The symbols ``names`` stand for (any spelling), de-duplicated in order, each one of ``covered`` (the markets a
    source has feeds for).

    Raises:
        UnknownSymbol: a name that is no market in ``covered``.
        InvalidInput: no names at all.
    """
    if isinstance(names, str):
        names = [names]
    out: list[str] = []
    for name in names:
        symbol = normalize(name)
        if symbol is None or symbol not in covered:
            raise UnknownSymbol(name.strip(), sorted(covered))
        if symbol not in out:
            out.append(symbol)
    if not out:
        raise InvalidInput("no market symbols requested")
    return out
