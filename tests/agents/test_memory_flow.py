"""The chat graph with a real Chroma memory (MiniLM embeddings, offline) and real checkpointers: insights recalled for
related questions, preferences that shape later answers, and threads that survive a restart on SQLite and PostgreSQL.
"""

from __future__ import annotations

import re

import pytest

from mikey.agents.chat import build_chat_graph, open_checkpointer, run_turn, thread_history
from mikey.agents.pipeline import PipelineContext, run_pipeline
from mikey.agents.state import ChatContext
from mikey.market.replay import ReplayFeed
from mikey.memory.embeddings import MiniLMEmbedding
from mikey.memory.store import INSIGHTS, open_memory
from mikey.router import fake
from mikey.router.chat_model import RouterChatModel
from mikey.router.groups import model_groups
from tests.fakes.conversation import Headlines, Scripted, copy_facts


@pytest.fixture(scope="module")
def embedding():
    return MiniLMEmbedding()


@pytest.fixture
def memory(settings, embedding):
    return open_memory(settings, embedding=embedding)


@pytest.fixture
def graph(settings):
    with open_checkpointer(settings) as checkpointer:
        yield build_chat_graph(checkpointer)


def chat_model(settings, model) -> RouterChatModel:
    groups = model_groups(settings)
    groups["local"] = fake.fake_group("local", "memory-flow", fake.FunctionModel(model), family="local")
    return RouterChatModel(settings, groups)


def _market(messages) -> str:
    return re.search(r"Market: (\w+)", messages[-1]["content"]).group(1)


def test_recall_brings_back_the_earlier_insight(settings, memory, graph) -> None:
    """The pipeline stores SOL's insight; a later, differently worded question about Solana recalls it, and the
    writer sees it fenced as earlier notes (never as facts)."""
    def write(messages):
        if "market summary feed" in messages[0]["content"]:  # the pipeline's insight prompt
            return f"{_market(messages)} momentum is mixed: the MACD line is below its signal line."
        return copy_facts(messages)

    writer = Scripted(write=write)
    model = chat_model(settings, writer)
    insight = run_pipeline(PipelineContext(settings=settings, feed=ReplayFeed(), chat_model=model, group="local",
                                           memory=memory), "SOL")
    run_pipeline(PipelineContext(settings=settings, feed=ReplayFeed(), chat_model=model, group="local",
                                 memory=memory), "BTC")

    context = ChatContext(settings=settings, feed=ReplayFeed(), chat_model=model, group="local", memory=memory)
    answer = run_turn(graph, context, "What did you make of solana's momentum?", "t")

    first = answer.facts.memories[0]
    assert (first.collection, first.symbol) == (INSIGHTS, "SOL")
    assert insight.summary in first.text
    prompt = writer.analyzed[-1][-1]["content"]
    notes = re.search(r'<untrusted source="earlier notes, may be outdated">\n(.*?)\n</untrusted>', prompt, re.S)
    assert insight.summary in notes.group(1)
    assert all(m.symbol == "SOL" for m in answer.facts.memories)  # recall is filtered to the turn's market


def test_chat_turns_are_remembered_per_user(settings, memory, graph) -> None:
    model = chat_model(settings, Scripted())
    alice = ChatContext(settings=settings, feed=ReplayFeed(), chat_model=model, group="local", memory=memory,
                        user_id="alice")
    run_turn(graph, alice, "How is ETH doing?", "a1")
    assert memory.recall("ether price", user_id="alice")[0].text.startswith("Q: How is ETH doing?")
    assert memory.recall("ether price", user_id="bob") == []


def test_stated_preferences_shape_later_answers(settings, memory, graph) -> None:
    """'I'm a conservative trader, I mostly trade ETH' is remembered: a later 8x position fails the low-tolerance
    leverage limit (it passes for a user without preferences), and a question naming no market covers ETH."""
    writer = Scripted()
    model = chat_model(settings, writer)
    alice = ChatContext(settings=settings, feed=ReplayFeed(), chat_model=model, group="local", memory=memory,
                        user_id="alice")
    bob = ChatContext(settings=settings, feed=ReplayFeed(), chat_model=model, group="local", memory=memory,
                      user_id="bob")

    noted = run_turn(graph, alice, "I'm a conservative trader, I mostly trade ETH", "a1")
    assert noted.group == "rules" and "risk tolerance is low" in noted.text and "you follow ETH" in noted.text
    assert memory.preferences("alice") == {"risk_tolerance": "low", "favourite_markets": "ETH"}

    question = "how risky is an 8x long on SOL with 500 USDC?"
    cautious = run_turn(graph, alice, question, "a2")  # a new thread: only the memory carries the preference
    plain = run_turn(graph, bob, question, "b1")
    leverage = {a: next(c for c in ans.facts.risk.checks if c.name == "max_leverage")
                for a, ans in (("alice", cautious), ("bob", plain))}
    assert (leverage["alice"].passed, leverage["alice"].limit) == (False, 5.0)
    assert (leverage["bob"].passed, leverage["bob"].limit) == (True, 20.0)
    assert "The user's risk tolerance: low." in writer.analyzed[0][-1]["content"]
    assert "risk tolerance" not in writer.analyzed[1][-1]["content"]

    open_question = run_turn(graph, alice, "what's up?", "a3")
    assert open_question.facts.symbol == "ETH"
    assert "favourite markets: ETH" in open_question.notice
    assert run_turn(graph, bob, "what's up?", "b2").facts is None
    assert run_turn(graph, alice, "what's the weather in Paris?", "a4").facts is None  # off-topic stays off-topic


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_thread_survives_a_restart(request, settings, backend) -> None:
    """Two 'processes' (two checkpointer connections, two graphs): the second continues the first's thread."""
    if backend == "postgres":
        settings = settings.model_copy(update={"checkpoint_url": request.getfixturevalue("postgres_url")})
    model = chat_model(settings, Scripted())
    context = ChatContext(settings=settings, feed=ReplayFeed(), chat_model=model, group="local")
    with open_checkpointer(settings) as saver:
        run_turn(build_chat_graph(saver), context, "How is SOL doing?", "t")
    with open_checkpointer(settings) as saver:
        graph = build_chat_graph(saver)
        follow = run_turn(graph, context, "and its RSI?", "t")
        history = thread_history(graph, "t")
    assert follow.facts.symbol == "SOL"
    assert [t["role"] for t in history] == ["user", "assistant", "user", "assistant"]
    assert history[1]["content"].startswith("SOL trades at 21.780764")


def test_bad_checkpoint_url_is_named(settings) -> None:
    from mikey.errors import ConfigError

    with pytest.raises(ConfigError, match="MIKEY_CHECKPOINT_URL must be a postgresql:// URL"):
        with open_checkpointer(settings.model_copy(update={"checkpoint_url": "mysql://x"})):
            pass


def test_headlines_read_once_are_found_by_meaning_for_a_why_question(settings, memory, graph) -> None:
    """A turn remembers the headlines it read; a later "why" question (with no news source at all) recalls the one
    that answers it by meaning, fenced as an earlier note."""
    from datetime import UTC, datetime

    from mikey.domain import NewsItem
    from mikey.memory.store import NEWS

    items = [NewsItem(id=f"n{i}", source="rss", title=title, url=f"https://example.com/{i}",
                      published_at=datetime(2023, 8, 28, tzinfo=UTC), symbols=["SOL"])
             for i, title in enumerate(["Solana network outage halts block production for five hours",
                                        "Solana Breakpoint conference tickets sell out"])]
    writer = Scripted()
    model = chat_model(settings, writer)
    reader = ChatContext(settings=settings, feed=ReplayFeed(), chat_model=model, group="local", memory=memory,
                         news=Headlines(items))
    run_turn(graph, reader, "How is SOL doing?", "t1")

    later = ChatContext(settings=settings, feed=ReplayFeed(), chat_model=model, group="local", memory=memory)
    answer = run_turn(graph, later, "Why did solana go down when the chain stopped?", "t2")
    assert answer.intent.kind == "explain"
    news = [m for m in answer.facts.memories if m.collection == NEWS]
    assert news and news[0].text.startswith("Solana network outage halts block production")
    assert "Solana network outage" in writer.analyzed[-1][-1]["content"].split("<untrusted")[1]
