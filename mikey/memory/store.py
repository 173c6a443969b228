"""``VectorMemory`` and its Chroma implementation (PersistentClient by default, HttpClient when a URL is set).

A chat turn is stored as one document (question and grounded answer) with its thread, market and time as metadata;
its id is a hash of thread and text, so storing the same turn twice keeps one copy.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlparse

from mikey.domain import Answer
from mikey.settings import Settings

CONVERSATIONS = "conversations"


@dataclass(frozen=True)
class MemoryHit:
    """One recalled document with its similarity (1 = same meaning) and metadata."""

    text: str
    similarity: float
    metadata: dict[str, Any]


class VectorMemory(Protocol):
    def remember_turn(self, *, thread_id: str, question: str, answer: Answer) -> str: ...

    def recall(self, query: str, *, k: int = 3, symbol: str | None = None) -> list[MemoryHit]: ...


class ChromaMemory:
    """``VectorMemory`` over a Chroma client, with the offline MiniLM embedding function."""

    def __init__(self, client: Any, embedding: Any | None = None) -> None:
        from mikey.memory.embeddings import MiniLMEmbedding

        self.client = client
        self.embedding = embedding or MiniLMEmbedding()
        self.conversations = client.get_or_create_collection(
            CONVERSATIONS, embedding_function=self.embedding, metadata={"hnsw:space": "cosine"}
        )

    def remember_turn(self, *, thread_id: str, question: str, answer: Answer) -> str:
        """Store the turn; returns its id (the same id for the same turn)."""
        text = f"Q: {question}\nA: {answer.text}"
        doc_id = hashlib.sha256(f"{thread_id}\n{text}".encode()).hexdigest()[:32]
        meta: dict[str, Any] = {"thread_id": thread_id, "group": answer.group, "stored_at": time.time()}
        if answer.facts is not None:
            meta["symbol"] = answer.facts.symbol
            numbers = answer.facts.numbers()
            if numbers:
                meta["as_of"] = numbers[0].as_of.isoformat()
        self.conversations.upsert(ids=[doc_id], documents=[text], metadatas=[meta])
        return doc_id

    def recall(self, query: str, *, k: int = 3, symbol: str | None = None) -> list[MemoryHit]:
        """The ``k`` stored turns closest in meaning to ``query``, optionally for one market only."""
        count = self.conversations.count()
        if count == 0:
            return []
        found = self.conversations.query(
            query_texts=[query], n_results=min(k, count), where={"symbol": symbol} if symbol else None
        )
        return [
            MemoryHit(text=doc, similarity=1.0 - float(dist), metadata=dict(meta))
            for doc, dist, meta in zip(found["documents"][0], found["distances"][0], found["metadatas"][0], strict=True)
        ]


def open_memory(settings: Settings) -> ChromaMemory:
    """The configured memory: a Chroma server when ``chroma_url`` is set, else a local PersistentClient."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    chroma_settings = ChromaSettings(anonymized_telemetry=False)
    if settings.chroma_url:
        url = urlparse(settings.chroma_url)
        client = chromadb.HttpClient(host=url.hostname or "127.0.0.1", port=url.port or 8000,
                                     ssl=url.scheme == "https", settings=chroma_settings)
    else:
        settings.chroma_dir.mkdir(parents=True, exist_ok=True)
        client = chromadb.PersistentClient(path=str(settings.chroma_dir), settings=chroma_settings)
    return ChromaMemory(client)
