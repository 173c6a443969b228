"""Chroma vector memory with the offline MiniLM embeddings: persistence, de-duplication, filtered recall."""

from __future__ import annotations

import socket

import pytest

from mikey.domain import Answer
from mikey.market.replay import ReplayFeed
from mikey.memory.store import open_memory


@pytest.fixture(scope="module")
def embedding():
    from mikey.memory.embeddings import MiniLMEmbedding

    return MiniLMEmbedding()


def answer_for(symbol: str, text: str) -> Answer:
    from mikey.domain import Facts

    return Answer(text=text, facts=Facts(symbol=symbol, quote=ReplayFeed().quote(symbol)), group="offline",
                  model="mikey-offline/facts-writer")


def test_embeddings_are_real_and_offline(embedding) -> None:
    near, far, query = embedding(["Bitcoin price jumped sharply", "Recipe for a chocolate cake",
                                  "The price of bitcoin rose fast"])
    assert len(query) == 384
    assert abs(float(query @ query) - 1.0) < 1e-5  # normalised
    assert float(near @ query) > float(far @ query) + 0.3


def test_remember_recall_dedupe_and_persist(settings, embedding) -> None:
    settings = settings.model_copy(update={"memory_enabled": True})
    memory = open_memory(settings)
    memory.embedding = embedding
    first = memory.remember_turn(thread_id="t", question="How is SOL doing?", answer=answer_for("SOL", "SOL rose."))
    again = memory.remember_turn(thread_id="t", question="How is SOL doing?", answer=answer_for("SOL", "SOL rose."))
    memory.remember_turn(thread_id="t", question="How is BTC doing?", answer=answer_for("BTC", "Bitcoin fell."))
    assert first == again and memory.conversations.count() == 2
    hits = memory.recall("solana", symbol="SOL")
    assert [h.metadata["symbol"] for h in hits] == ["SOL"]
    assert hits[0].metadata["as_of"].startswith("2023-08-29")
    reopened = open_memory(settings)
    assert reopened.conversations.count() == 2


def test_no_network_needed(monkeypatch, settings) -> None:
    """Opening the store and embedding must not try any socket at all (not even loopback)."""
    def refuse(*args, **kwargs):
        raise AssertionError("memory tried to open a connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    memory = open_memory(settings.model_copy(update={"memory_enabled": True}))
    memory.remember_turn(thread_id="t", question="q", answer=answer_for("ETH", "Ether is flat."))
    assert memory.recall("ether")[0].metadata["symbol"] == "ETH"
