"""The offline writer: the last fallback must answer from the facts block alone, with only verifiable numbers."""

from __future__ import annotations

from datetime import date

import pytest

from mikey.agents.grounding import ground
from mikey.analysis import indicators
from mikey.domain import Facts
from mikey.errors import InvalidInput
from mikey.market.replay import ReplayFeed
from mikey.router.offline import facts_block, parse_facts, render


def build_facts(symbol: str, as_of: date | None = None) -> Facts:
    feed = ReplayFeed(as_of=as_of)
    return Facts(
        symbol=symbol,
        quote=feed.quote(symbol),
        indicators=indicators.snapshot(feed.candles(symbol)),
        parameters=dict(indicators.PARAMETERS),
    )


def as_messages(facts: Facts, question: str = "How is it doing?") -> list[dict[str, str]]:
    return [
        {"role": "system", "content": "You are MIKEY."},
        {"role": "user", "content": f"Question: {question}\n\n{facts_block(facts)}"},
    ]


@pytest.fixture(scope="module")
def sol() -> Facts:
    return build_facts("SOL")


def test_facts_block_format(sol: Facts) -> None:
    """Plain 'name: display' lines between tags, symbol and date first, in the facts card's order."""
    block = facts_block(sol)

    assert block.splitlines() == [
        "<facts>",
        "symbol: SOL",
        "as_of: 2023-08-29",
        "price: 21.780764",
        "change_1d_pct: +5.95%",
        "rsi_14: 47.86",
        "macd: -0.7231",
        "macd_signal: -0.6479",
        "macd_hist: -0.0751",
        "bb_upper: 25.5231",
        "bb_middle: 22.2592",
        "bb_lower: 18.9953",
        "atr_14: 1.0962",
        "</facts>",
    ]


@pytest.mark.parametrize("symbol", ["SOL", "BTC", "ETH"])
def test_facts_block_round_trips(symbol: str) -> None:
    """What the writer parses back is exactly what the facts display: symbol, as-of date and every display string."""
    facts = build_facts(symbol)

    payload = parse_facts(as_messages(facts))

    assert payload == {
        "symbol": symbol,
        "as_of": "2023-08-29",
        "facts": {f.name: f.display for f in facts.numbers()},
    }


def test_render_states_the_display_strings(sol: Facts) -> None:
    """Every figure in the sentences is a display string of the facts, copied character for character."""
    text = render(parse_facts(as_messages(sol)))

    for expected in (
        "SOL last closed at 21.780764 USD on 2023-08-29, +5.95% on the day.",
        "RSI(14) is 47.86, in neutral territory.",
        "The MACD line (-0.7231) is below its signal line (-0.6479), a bearish momentum reading.",
        "Price is inside the Bollinger Bands (18.9953 to 25.5231), below the middle band at 22.2592.",
        "ATR(14) is 1.0962 USD, the typical daily range.",
    ):
        assert expected in text


@pytest.mark.parametrize(
    ("symbol", "as_of"),
    [("SOL", None), ("BTC", None), ("ETH", None), ("SOL", date(2021, 11, 6)), ("BTC", date(2022, 6, 18)),
     ("ETH", date(2021, 3, 1))],
)
def test_every_rendered_number_passes_grounding(symbol: str, as_of: date | None) -> None:
    """The fallback's own text must never be censored by the grounding step it backs up."""
    facts = build_facts(symbol, as_of)
    text = render(parse_facts(as_messages(facts)))

    grounded, report = ground(text, facts)

    assert report.removed == []
    assert grounded == text
    assert report.checked >= 10


def test_only_the_last_user_facts_block_is_used() -> None:
    """In a conversation, the newest user turn's facts win; facts quoted by the assistant are ignored."""
    older, newer = build_facts("BTC"), build_facts("ETH")
    messages = [
        {"role": "user", "content": facts_block(older)},
        {"role": "user", "content": facts_block(newer)},
        {"role": "assistant", "content": facts_block(older)},
    ]

    assert parse_facts(messages)["symbol"] == "ETH"


def test_message_without_facts_block_is_invalid() -> None:
    with pytest.raises(InvalidInput, match="needs a <facts> block"):
        parse_facts([{"role": "user", "content": "How is SOL doing?"}])


def test_facts_block_without_symbol_is_invalid() -> None:
    with pytest.raises(InvalidInput, match="names no symbol"):
        parse_facts([{"role": "user", "content": "<facts>\nprice: 1\n</facts>"}])


def test_symbol_only_facts_render_a_notice() -> None:
    """With no numbers at all the writer says so instead of inventing any."""
    text = render(parse_facts([{"role": "user", "content": facts_block(Facts(symbol="SOL"))}]))

    assert text == "No facts are available for SOL."
