"""Symbol tagging: whole-word tickers and names in any case and decoration, never substrings of other words."""

from __future__ import annotations

import pytest

from mikey.market.tagging import tag_symbols


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("SOL breaks out", ["SOL"]),
        ("sol looking heavy", ["SOL"]),
        ("Solana validators ship an upgrade", ["SOL"]),
        ("SOLANA and solana and Solana", ["SOL"]),
        ("$SOL to the moon", ["SOL"]),
        ("#Bitcoin trends again", ["BTC"]),
        ("Long SOL-PERP, short ETH-PERP", ["SOL", "ETH"]),
        ("sol-perp funding", ["SOL"]),
        ("SOL/USDC pool", ["SOL"]),
        ("BTCUSDT and ETHUSD", ["BTC", "ETH"]),
        ("bitcoin, Ethereum; ether.", ["BTC", "ETH"]),
        ("XBT futures", ["BTC"]),
        ("ETH/BTC ratio", ["ETH", "BTC"]),
        ("(SOL)", ["SOL"]),
        ("Bitcoin's dominance", ["BTC"]),
        ("10 SOL per day", ["SOL"]),
    ],
)
def test_mentions_are_tagged(text: str, expected: list[str]) -> None:
    assert tag_symbols(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "A new custody solution",
        "We will resolve the issue",
        "the console wars",
        "Ethan wrote the report",
        "Something happened in Bethlehem",
        "insolvency filings rise",
        "a soluble problem",
        "solstice party",
        "SOLx and ETH2 and BTCB are other tokens",
        "bitcoiner meetup",
        "sol_x variable",
        "",
    ],
)
def test_substrings_are_not_tagged(text: str) -> None:
    assert tag_symbols(text) == []


def test_order_of_first_mention_and_no_repeats() -> None:
    text = "ETH leads, then SOL; later $eth and Solana again, and BTC last"
    assert tag_symbols(text) == ["ETH", "SOL", "BTC"]


def test_non_ascii_letters_count_as_word_characters() -> None:
    assert tag_symbols("Ñsol and solé") == []
    assert tag_symbols("Solana — «SOL» sube") == ["SOL"]
