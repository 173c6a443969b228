"""Symbol names: people write markets many ways; each must land on one supported symbol or be refused clearly."""

from __future__ import annotations

import pytest

from mikey.errors import UnknownSymbol
from mikey.market import symbols


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("sol", "SOL"),
        ("SOL", "SOL"),
        ("Solana", "SOL"),
        ("SOL-PERP", "SOL"),
        ("$sol", "SOL"),
        ("sol/usd", "SOL"),
        (" sol ", "SOL"),
        ("BTC-USDC", "BTC"),
        ("bitcoin", "BTC"),
        ("eth", "ETH"),
        ("Ethereum", "ETH"),
    ],
)
def test_known_names_resolve(name: str, expected: str) -> None:
    assert symbols.normalize(name) == expected
    assert symbols.resolve(name) == expected


@pytest.mark.parametrize("name", ["DOGE", "$doge", "DOGE-PERP", "", "usd"])
def test_unknown_names_normalize_to_none(name: str) -> None:
    """Uncovered tickers and bare quote currencies are not markets."""
    assert symbols.normalize(name) is None


def test_resolve_unknown_lists_supported_markets() -> None:
    """The refusal names every covered market, so the user knows what to ask for instead."""
    with pytest.raises(UnknownSymbol) as caught:
        symbols.resolve(" DOGE ")

    assert caught.value.symbol == "DOGE"
    assert caught.value.supported == ["BTC", "ETH", "SOL"]
    assert str(caught.value) == "unknown market 'DOGE'; supported markets: BTC, ETH, SOL"
