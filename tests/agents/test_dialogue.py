"""Multi-turn conversations on the embedded defaults (offline writer, the real chat graph and checkpointer): follow-ups
keep the question with its change, an assumed value is named in the answer, comparisons state the computed winner,
terms are explained from the glossary with the market's current value, and MIKEY says who it is."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mikey.agents.chat import build_chat_graph, open_checkpointer, run_turn
from mikey.agents.dialogue import follow_up, is_follow_up, remember
from mikey.agents.glossary import entries, lookup
from mikey.agents.state import ChatContext
from mikey.domain import Intent
from mikey.market.replay import ReplayFeed
from mikey.router.chat_model import RouterChatModel
from mikey.tools.market import get_indicators


@pytest.fixture
def graph(settings) -> Iterator:
    with open_checkpointer(settings) as saver:
        yield build_chat_graph(saver)


@pytest.fixture
def context(settings) -> ChatContext:
    return ChatContext(settings=settings, feed=ReplayFeed(), chat_model=RouterChatModel(settings), group="offline")


def test_a_follow_up_re_asks_the_risk_question_with_its_change(graph, context) -> None:
    first = run_turn(graph, context, "how risky is a 5x long on SOL with 300 USDC?", "t")
    assert (first.facts.risk.leverage, first.facts.risk.collateral) == (5.0, 300.0)
    changed = run_turn(graph, context, "what if I use 10x instead?", "t")
    assert changed.intent.kind == "risk" and changed.intent.symbols == ["SOL"]
    risk = changed.facts.risk
    assert (risk.side, risk.leverage, risk.collateral) == ("long", 10.0, 300.0)
    other = run_turn(graph, context, "and for eth?", "t")
    assert other.intent.kind == "risk" and other.facts.risk.market == "ETH"
    assert (other.facts.risk.leverage, other.facts.risk.collateral) == (10.0, 300.0)
    assert "Follow-up" in (other.notice or "")


def test_an_assumed_value_is_named_in_the_answer(graph, context) -> None:
    answer = run_turn(graph, context, "how risky is a 10x long on BTC?", "t")
    assert answer.facts.risk.collateral == 1000.0
    assert answer.text.splitlines()[0] == "Assumed 1,000 USD collateral (not in your question)."
    given = run_turn(graph, context, "how risky is a 10x long on BTC with 500 usdc?", "t2")
    assert "Assumed" not in given.text


def test_a_comparison_states_the_computed_winner(graph, context) -> None:
    run_turn(graph, context, "how is SOL doing?", "t")
    compared = run_turn(graph, context, "compare that with btc", "t")
    assert compared.intent.kind == "compare" and compared.intent.symbols == ["SOL", "BTC"]
    sol, btc = get_indicators(ReplayFeed(), "SOL").rsi_14, get_indicators(ReplayFeed(), "BTC").rsi_14
    winner, loser = ("BTC", "SOL") if btc > sol else ("SOL", "BTC")
    line = compared.text.splitlines()[-1]
    assert line.startswith("Compared by code: higher RSI(14): " + winner)
    assert f"{loser} {min(sol, btc):.2f}" in line
    which = run_turn(graph, context, "which one has the higher rsi?", "t")
    assert which.intent.kind == "compare" and "higher RSI(14): " + winner in which.text


def test_a_term_is_explained_from_the_glossary_with_the_markets_value(graph, context) -> None:
    answer = run_turn(graph, context, "what is the rsi of sol?", "t")
    assert answer.group == "rules" and answer.text.startswith("Relative Strength Index (RSI):")
    assert "Source: J. Welles Wilder" in answer.text
    rsi = get_indicators(ReplayFeed(), "SOL").rsi_14
    assert f"SOL now: RSI(14) {rsi:,.4f}" in answer.text


def test_the_glossary_matches_terms_as_traders_write_them() -> None:
    assert {e.term for e in entries()} >= {"RSI", "MACD", "Bollinger Bands", "ATR", "Funding rate",
                                            "Liquidation price", "Isolated margin", "VaR"}
    for message, term in [("what does RSI mean?", "RSI"), ("explain funding rates", "Funding rate"),
                          ("isolated vs cross margin?", "Isolated margin"),
                          ("how do bolinger bands work", "Bollinger Bands"),
                          ("what's my liq price about", "Liquidation price"), ("what is value at risk", "VaR")]:
        found = lookup(message)
        assert found is not None and found.term == term, message
    assert lookup("how is the weather?") is None
    assert lookup("what is sol doing") is None  # "sol" is a market, not a term


def test_the_glossary_is_recalled_by_meaning_from_the_vector_store(settings) -> None:
    from mikey.memory.store import open_memory

    memory = open_memory(settings.model_copy(update={"memory_enabled": True}))
    try:
        found = lookup("why do longs have to pay the shorts every eight hours?", memory)  # names no term
        assert found is not None and found.term == "Funding rate"
        assert lookup("how much could I lose on a bad day?", memory).term == "VaR"
        assert lookup("why is it moving today?", memory, market_named=True) is None  # about the market, not a term
    finally:
        memory.close()


def test_mikey_says_who_it_is(graph, context) -> None:
    answer = run_turn(graph, context, "hi", "t")
    assert answer.text.startswith("Hi, I'm MIKEY") and "risk of a position" and "alerts" in answer.text


def test_follow_up_rules() -> None:
    last = remember(Intent(kind="risk", symbols=["SOL"], side="long", leverage=5, collateral=300), None)
    assert is_follow_up("and for sol?") and is_follow_up("what if I use 10x instead?")
    assert not is_follow_up("how is btc doing?")
    fresh = Intent(kind="analysis", symbols=["BTC"])
    assert follow_up(fresh, "how is btc doing?", last) == (fresh, None)  # a question of its own starts afresh
    trade = Intent(kind="trade", symbols=["SOL"], side="long", leverage=2, collateral=100)
    assert follow_up(trade, "and open a 2x long on sol with 100 usdc", last)[0] == trade  # never re-proposes
    assert remember(Intent(kind="smalltalk"), last) == last  # a greeting changes nothing
