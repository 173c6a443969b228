"""The rule parser: intent kind and markets from a chat message, without a model."""

from __future__ import annotations

import pytest

from mikey.agents.understand import parse
from mikey.domain import Intent


@pytest.mark.parametrize(
    ("message", "kind", "found"),
    [
        ("How is SOL doing?", "analysis", ["SOL"]),
        ("how is sol doing?", "analysis", ["SOL"]),
        ("price of solana", "price", ["SOL"]),
        ("sol-perp rsi?", "analysis", ["SOL"]),
        ("What is $sol trading at", "price", ["SOL"]),
        ("compare BTC and ETH", "compare", ["BTC", "ETH"]),
        ("btc and eth today", "compare", ["BTC", "ETH"]),
        ("open a 5x long on SOL with 300 USDC", "trade", ["SOL"]),
    ],
)
def test_known_markets_and_kinds(message: str, kind: str, found: list[str]) -> None:
    """Known markets are recognised in any spelling; the kind follows the wording (two markets imply compare)."""
    intent = parse(message)
    assert (intent.kind, intent.symbols, intent.unknown_symbols) == (kind, found, [])


def test_unknown_ticker_is_reported_not_guessed() -> None:
    """'DOGE' is written like a ticker but not covered: it is reported so the answer can say so."""
    intent = parse("How is DOGE doing?")

    assert intent.symbols == []
    assert intent.unknown_symbols == ["DOGE"]
    assert intent.kind == "analysis"


def test_known_and_unknown_together() -> None:
    """A covered and an uncovered market in one message are kept apart."""
    intent = parse("compare SOL and $doge")

    assert intent.symbols == ["SOL"]
    assert intent.unknown_symbols == ["DOGE"]
    assert intent.kind == "compare"


@pytest.mark.parametrize(
    ("message", "kind"),
    [("hi", "smalltalk"), ("Good morning!", "smalltalk"), ("", "unknown"), ("what's up", "unknown")],
)
def test_messages_without_markets(message: str, kind: str) -> None:
    """Greetings are smalltalk; anything else without a market is unknown, with no symbols invented."""
    assert parse(message) == Intent(kind=kind)


def test_shouting_does_not_make_words_tickers() -> None:
    """In an all-capitals message, HOW, IS and DOING are words, not unknown tickers."""
    intent = parse("HOW IS SOL DOING")

    assert intent.symbols == ["SOL"]
    assert intent.unknown_symbols == []


def test_indicator_names_are_not_tickers() -> None:
    """RSI is written in capitals like a ticker, but it is an indicator."""
    intent = parse("what is the RSI of ETH")

    assert intent.symbols == ["ETH"]
    assert intent.unknown_symbols == []
    assert intent.kind == "explain"


def test_follow_up_inherits_previous_market() -> None:
    """'and its RSI?' names no market: it continues the conversation about the previous one."""
    assert parse("and its RSI?", previous_symbols=["SOL"]).symbols == ["SOL"]
    assert parse("and its RSI?").symbols == []


def test_greeting_does_not_inherit_previous_market() -> None:
    """A greeting starts over rather than answering about the last market again."""
    assert parse("hi there", previous_symbols=["SOL"]) == Intent(kind="smalltalk")


def test_named_market_overrides_previous() -> None:
    """A follow-up that names a market is about that market only."""
    assert parse("and BTC?", previous_symbols=["SOL"]).symbols == ["BTC"]


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("open a 5x long on SOL with 300 USDC", {"kind": "trade", "side": "long", "leverage": 5, "collateral": 300}),
        ("go short ETH 10x with $1,500", {"kind": "trade", "side": "short", "leverage": 10, "collateral": 1500}),
        ("5x long SOL 300 usdc", {"kind": "trade", "side": "long", "leverage": 5, "collateral": 300}),
        ("how risky is a 20x long on BTC?", {"kind": "risk", "side": "long", "leverage": 20, "collateral": None}),
        ("where would a 3x short on sol get liquidated?", {"kind": "risk", "side": "short", "leverage": 3}),
        ("SOL outlook for this week", {"kind": "analysis", "timeframe": "1w"}),
        ("btc hourly", {"kind": "analysis", "timeframe": "1h"}),
    ],
)
def test_position_parameters_and_timeframe(message: str, expected: dict) -> None:
    """Side, leverage, collateral and timeframe come from the user's words; a question about risk is not an order."""
    intent = parse(message)
    for field, value in expected.items():
        assert getattr(intent, field) == value, field


@pytest.mark.parametrize(
    ("message", "tolerance", "favourites"),
    [
        ("I'm a conservative trader", "low", []),
        ("I am pretty aggressive, I mostly trade SOL and ETH", "high", ["SOL", "ETH"]),
        ("my favourite coin is bitcoin", None, ["BTC"]),
    ],
)
def test_preferences_are_read(message: str, tolerance: str | None, favourites: list[str]) -> None:
    """Risk tolerance and favourite markets are stated in plain words; a message that only states them is smalltalk."""
    intent = parse(message)
    assert (intent.risk_tolerance, intent.favourite_markets) == (tolerance, favourites)
