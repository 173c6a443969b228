"""Chroma vector memory with the offline MiniLM embeddings: ranked recall, filters, de-duplication, preferences,
persistence. Every test uses a real PersistentClient in a temporary folder and the real embedding model."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mikey.domain import NewsItem
from mikey.errors import InvalidInput
from mikey.memory.store import CONVERSATIONS, INSIGHTS, NEWS, PREFERENCES, ChromaMemory, open_memory
from tests.fakes.memories import SOL_MACD, answer_for, insight_for

NETGUARD_DIR = Path(__file__).resolve().parents[1] / "netguard"
T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)


class Clock:
    """A settable clock: what the memory writes as ``stored_at``."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, days: float) -> None:
        self.now += timedelta(days=days)


@pytest.fixture(scope="module")
def embedding():
    from mikey.memory.embeddings import MiniLMEmbedding

    return MiniLMEmbedding()


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def memory(settings, embedding, clock) -> ChromaMemory:
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    client = chromadb.PersistentClient(path=str(settings.chroma_dir),
                                       settings=ChromaSettings(anonymized_telemetry=False))
    return ChromaMemory(client, embedding, clock=clock)


def news_item(title: str, summary: str, symbols: list[str]) -> NewsItem:
    return NewsItem(id=title.lower().replace(" ", "-"), source="coindesk", title=title, url="https://example.org/n",
                    published_at=T0 - timedelta(hours=3), summary=summary, symbols=symbols)


BTC_ETF = "Bitcoin ETF inflows slowed this week as issuers reported smaller creations."


def test_embeddings_are_real_and_offline(embedding) -> None:
    near, far, query = embedding(["Bitcoin price jumped sharply", "Recipe for a chocolate cake",
                                  "The price of bitcoin rose fast"])
    assert len(query) == 384
    assert abs(float(query @ query) - 1.0) < 1e-5  # normalised
    assert float(near @ query) > float(far @ query) + 0.3


def test_related_question_recalls_insight_first_and_turns_too(memory) -> None:
    insight_id = memory.remember_insight(insight_for("SOL", SOL_MACD))
    memory.remember_turn(thread_id="t1", user_id="alice", question="Any news on the bitcoin ETF?",
                         answer=answer_for("BTC", BTC_ETF))
    memory.remember_turn(thread_id="t1", user_id="alice", question="How is SOL doing?",
                         answer=answer_for("SOL", "SOL last closed at 21.78 USD, up 5.95% on the day."))

    hits = memory.recall("what did you say about solana momentum", user_id="alice")
    assert [(h.collection, h.symbol) for h in hits] == [(INSIGHTS, "SOL"), (CONVERSATIONS, "SOL"),
                                                        (CONVERSATIONS, "BTC")]
    top = hits[0]
    assert top.text == (f"SOL 2023-08-29: {SOL_MACD} Signal BUY (0.62). Risk MEDIUM."
                        " Recommendations: Size positions for the wider daily range.")
    assert top.stored_at == T0 and 0 < top.similarity <= 1
    assert top.score == pytest.approx(0.8 * top.similarity + 0.2 * 1.0)  # stored "now": recency 1
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert memory.recall("solana momentum", user_id="alice", k=1)[0].text == top.text
    assert insight_id == memory.remember_insight(insight_for("SOL", SOL_MACD))  # same insight, same id


def test_users_see_their_own_turns_and_shared_insights(memory) -> None:
    memory.remember_turn(thread_id="a", user_id="alice", question="How is ETH doing?",
                         answer=answer_for("ETH", "Ether is flat on the day."))
    memory.remember_turn(thread_id="b", user_id="bob", question="How is ETH doing?",
                         answer=answer_for("ETH", "Ether slipped after the upgrade delay."))
    memory.remember_insight(insight_for("ETH", "ETH trades sideways inside its Bollinger bands."))
    memory.remember_insight(insight_for("ETH", "ETH is Bob's largest holding; watch its funding."), user_id="bob")

    alice = memory.recall("ether", user_id="alice", k=10)
    bob = memory.recall("ether", user_id="bob", k=10)
    assert sorted(h.text for h in alice) == sorted([
        "Q: How is ETH doing?\nA: Ether is flat on the day.",
        "ETH 2023-08-29: ETH trades sideways inside its Bollinger bands. Signal BUY (0.62). Risk MEDIUM."
        " Recommendations: Size positions for the wider daily range.",
    ])
    assert len(bob) == 3 and not any("flat on the day" in h.text for h in bob)
    assert any("Bollinger" in h.text for h in bob)  # the shared insight
    assert len(memory.recall("ether", k=10)) == 4  # no user given: everything


def test_symbol_filter_covers_every_market_of_a_document(memory) -> None:
    memory.remember_turn(thread_id="t", user_id="alice", question="How is SOL doing?",
                         answer=answer_for("SOL", "SOL rose."))
    memory.remember_turn(thread_id="t", user_id="alice", question="How is BTC doing?",
                         answer=answer_for("BTC", "Bitcoin fell."))
    memory.remember_news([news_item("SOL and BTC rally together", "Both led the majors higher.", ["SOL", "BTC"]),
                          news_item("Ether gas fees fall", "Layer-2 usage grew.", ["ETH"])])
    everywhere = (CONVERSATIONS, INSIGHTS, NEWS)

    btc = memory.recall("how are markets doing", collections=everywhere, symbol="BTC", k=10)
    assert sorted((h.collection, h.symbol) for h in btc) == [(CONVERSATIONS, "BTC"), (NEWS, "SOL")]
    sol = memory.recall("how are markets doing", collections=everywhere, symbol="SOL", k=10)
    assert sorted(h.text for h in sol) == ["Q: How is SOL doing?\nA: SOL rose.",
                                           "SOL and BTC rally together\nBoth led the majors higher."]
    assert memory.recall("how are markets doing", collections=[NEWS], symbol="ETH", user_id="alice")[0].text \
        == "Ether gas fees fall\nLayer-2 usage grew."  # news has no owner: every user sees it
    assert memory.recall("how are markets doing", symbol="DOGE") == []


def test_since_keeps_only_newer_memories(memory, clock) -> None:
    memory.remember_turn(thread_id="t", user_id="alice", question="How is SOL doing?",
                         answer=answer_for("SOL", "SOL rose in early March."))
    clock.advance(days=10)
    memory.remember_turn(thread_id="t", user_id="alice", question="How is SOL doing now?",
                         answer=answer_for("SOL", "SOL pulled back mid-month."))

    recent = memory.recall("SOL", user_id="alice", since=T0 + timedelta(days=5), k=5)
    assert [h.text for h in recent] == ["Q: How is SOL doing now?\nA: SOL pulled back mid-month."]
    assert recent[0].stored_at == T0 + timedelta(days=10)
    assert len(memory.recall("SOL", user_id="alice", since=T0, k=5)) == 2  # since is inclusive
    assert memory.recall("SOL", user_id="alice", symbol="SOL", since=T0 + timedelta(days=11)) == []


def test_newer_of_two_similar_memories_ranks_first(memory, clock, embedding) -> None:
    older = "Q: How is SOL doing?\nA: SOL funding rates turned positive this week."
    newer = "Q: How is SOL doing?\nA: SOL funding rates turned negative this week."
    memory.remember_turn(thread_id="t", user_id="alice", question="How is SOL doing?",
                         answer=answer_for("SOL", older.split("A: ")[1]))
    clock.advance(days=3)
    memory.remember_turn(thread_id="t", user_id="alice", question="How is SOL doing?",
                         answer=answer_for("SOL", newer.split("A: ")[1]))
    query, now = "what is SOL funding doing", T0 + timedelta(days=3)

    ranked = memory.recall(query, user_id="alice", now=now)
    assert [h.text for h in ranked] == [newer, older]
    assert ranked[0].similarity < ranked[1].similarity  # the older one is the closer match...
    age = ranked[1]  # ...but three days old: recency 0.5 ** (3 / 7)
    assert age.score == pytest.approx(0.8 * age.similarity + 0.2 * 0.5 ** (3 / 7))

    by_meaning = ChromaMemory(memory.client, embedding, recency_weight=0.0, clock=memory.clock)
    assert [h.text for h in by_meaning.recall(query, user_id="alice", now=now)] == [older, newer]


def test_exact_duplicate_keeps_one_copy_and_refreshes(memory, clock) -> None:
    ask = dict(thread_id="t", user_id="alice", question="How is SOL doing?", answer=answer_for("SOL", "SOL rose."))
    first = memory.remember_turn(**ask)
    clock.advance(days=2)
    assert memory.remember_turn(**ask) == first
    conversations = memory.collections[CONVERSATIONS]
    assert conversations.count() == 1
    assert conversations.get(ids=[first])["metadatas"][0]["stored_at"] == (T0 + timedelta(days=2)).timestamp()

    assert memory.remember_turn(**{**ask, "user_id": "bob"}) != first  # another user's turn is their own
    assert conversations.count() == 2
    assert memory.remember_turn(**{**ask, "answer": answer_for("SOL", "  ")}) is None
    assert conversations.count() == 2


def test_near_duplicate_keeps_one_copy_and_refreshes_stored_at(memory, clock) -> None:
    first = memory.remember_insight(insight_for("SOL", SOL_MACD))
    clock.advance(days=1)
    paraphrase = SOL_MACD.replace("above", "over")
    assert memory.remember_insight(insight_for("SOL", paraphrase)) == first
    insights = memory.collections[INSIGHTS]
    assert insights.count() == 1
    kept = insights.get(ids=[first])
    assert SOL_MACD in kept["documents"][0]
    assert kept["metadatas"][0]["stored_at"] == (T0 + timedelta(days=1)).timestamp()

    # The same words about another market, or for one user only, are a different memory.
    memory.remember_insight(insight_for("ETH", SOL_MACD.replace("SOL", "ETH")))
    memory.remember_insight(insight_for("SOL", paraphrase), user_id="alice")
    assert insights.count() == 3
    memory.remember_insight(insight_for("SOL", "Solana momentum faded as RSI slipped under 40.", action="SELL"))
    assert insights.count() == 4


def test_news_is_stored_once_and_recalled_with_its_markets(memory, clock) -> None:
    items = [news_item("Bitcoin ETF inflows slow", BTC_ETF, ["BTC"]),
             news_item("Solana validators upgrade", "The network rolled out a new client release.", ["SOL"])]
    ids = memory.remember_news(items)
    assert len(ids) == 2
    clock.advance(days=1)
    assert memory.remember_news(iter(items)) == ids
    assert memory.collections[NEWS].count() == 2
    assert memory.remember_news([news_item(" ", "", ["SOL"])]) == []

    hit = memory.recall("spot bitcoin fund flows", collections=[NEWS], k=1)[0]
    assert (hit.collection, hit.symbol, hit.stored_at) == (NEWS, "BTC", T0 + timedelta(days=1))
    meta = memory.collections[NEWS].get(ids=[ids[0]])["metadatas"][0]
    assert meta["url"] == "https://example.org/n" and meta["source"] == "coindesk"
    assert meta["published"] == (T0 - timedelta(hours=3)).isoformat()


def test_preferences_overwrite_and_stay_per_user(memory) -> None:
    assert memory.preferences("alice") == {}
    memory.set_preference("alice", "risk_tolerance", "low")
    memory.set_preference("alice", "favourite_markets", "SOL,ETH")
    memory.set_preference("bob", "risk_tolerance", "high")
    memory.set_preference("alice", "risk_tolerance", "medium")

    assert memory.preferences("alice") == {"risk_tolerance": "medium", "favourite_markets": "SOL,ETH"}
    assert memory.preferences("bob") == {"risk_tolerance": "high"}
    assert memory.collections[PREFERENCES].count() == 3
    assert memory.recall("risk tolerance", user_id="alice") == []  # preferences are not recalled as memories


def test_empty_memory_recalls_nothing(memory) -> None:
    assert memory.recall("anything at all", collections=(CONVERSATIONS, INSIGHTS, NEWS), user_id="alice") == []


@pytest.mark.parametrize(("call", "message"), [
    (lambda m: m.recall("sol", k=0), "k must be at least 1, got 0"),
    (lambda m: m.recall("sol", collections=["trades"]), "unknown collection 'trades'"),
    (lambda m: m.recall("sol", collections=[PREFERENCES]), "unknown collection 'preferences'"),
    (lambda m: m.recall("sol", collections=[]), "collections is empty"),
    (lambda m: m.recall("  "), "query is empty"),
    (lambda m: m.recall("sol", since=datetime(2024, 3, 1)), "since must be timezone-aware"),
    (lambda m: m.set_preference("", "risk_tolerance", "low"), "user_id is empty"),
    (lambda m: m.set_preference("alice", " ", "low"), "key is empty"),
    (lambda m: m.set_preference("alice", "risk_tolerance", ""), "value is empty"),
    (lambda m: m.set_preference("*", "risk_tolerance", "low"), "user_id '\\*' is reserved"),
    (lambda m: m.preferences(""), "user_id is empty"),
    (lambda m: m.remember_turn(thread_id="t", user_id="", question="q", answer=answer_for("SOL", "x")),
     "user_id is empty"),
    (lambda m: m.remember_turn(thread_id="", user_id="alice", question="q", answer=answer_for("SOL", "x")),
     "thread_id is empty"),
])
def test_bad_input_is_refused_and_keeps_what_is_stored(memory, call, message) -> None:
    memory.set_preference("alice", "risk_tolerance", "low")
    memory.remember_turn(thread_id="t", user_id="alice", question="How is SOL doing?",
                         answer=answer_for("SOL", "SOL rose."))
    with pytest.raises(InvalidInput, match=message):
        call(memory)
    assert memory.preferences("alice") == {"risk_tolerance": "low"}
    assert [h.text for h in memory.recall("SOL", user_id="alice")] == ["Q: How is SOL doing?\nA: SOL rose."]


RESTARTED = """
import json
from mikey.memory.store import INSIGHTS, open_memory
from mikey.settings import Settings
memory = open_memory(Settings())
hits = memory.recall("solana momentum", user_id="alice")
print(json.dumps({"preferences": memory.preferences("alice"), "texts": [h.text for h in hits],
                  "counts": {name: c.count() for name, c in memory.collections.items()}}))
"""


def test_memories_survive_a_restart(settings, embedding) -> None:
    """A second process opening the same folder finds every collection, preference and vector."""
    memory = open_memory(settings, embedding)
    memory.remember_turn(thread_id="t", user_id="alice", question="How is SOL doing?",
                         answer=answer_for("SOL", "SOL is gaining momentum."))
    memory.remember_insight(insight_for("SOL", SOL_MACD))
    memory.remember_news([news_item("Bitcoin ETF inflows slow", BTC_ETF, ["BTC"])])
    memory.set_preference("alice", "risk_tolerance", "low")

    env = {**os.environ, "MIKEY_HOME": str(settings.home), "PYTHONPATH": str(NETGUARD_DIR)}
    done = subprocess.run([sys.executable, "-c", RESTARTED], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["preferences"] == {"risk_tolerance": "low"}
    assert seen["counts"] == {"conversations": 1, "insights": 1, "news": 1, "preferences": 1, "glossary": 0}
    assert seen["texts"][0].startswith(f"SOL 2023-08-29: {SOL_MACD}")
    assert seen["texts"][1] == "Q: How is SOL doing?\nA: SOL is gaining momentum."


def test_no_network_needed(monkeypatch, settings) -> None:
    """Opening the store and loading the embedding model must not try any socket at all (not even loopback)."""
    def refuse(*args, **kwargs):
        raise AssertionError("memory tried to open a connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    memory = open_memory(settings)
    memory.remember_turn(thread_id="t", user_id="alice", question="q", answer=answer_for("ETH", "Ether is flat."))
    assert memory.recall("ether", user_id="alice")[0].symbol == "ETH"
