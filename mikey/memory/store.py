"""``VectorMemory`` and its Chroma implementation (PersistentClient by default, HttpClient when a URL is set).

Four collections, all embedded with the offline MiniLM function and compared by cosine distance:

- ``conversations``: one document per chat turn (``Q: question`` / ``A: answer``), with user, thread, markets, time;
- ``insights``: one compact summary per analysis-pipeline insight, for one user or shared (``user_id`` ``"*"``);
- ``news``: headline and summary of each news item (shared by everyone);
- ``preferences``: one document per (user, key), read back by metadata only.

Every document carries ``stored_at`` (epoch seconds) so recall can filter by time and prefer recent memories.
Storing the same thing twice keeps one copy: ids are a hash of collection, user and text, and a new document whose
nearest neighbour (same collection, user and market) is at least ``duplicate_similarity`` alike only refreshes that
neighbour's ``stored_at``. Recalled text is older words, never a source of current numbers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import urlparse

from mikey.domain import Answer, Insight, NewsItem, Recall
from mikey.errors import InvalidInput
from mikey.settings import Settings

CONVERSATIONS = "conversations"
INSIGHTS = "insights"
NEWS = "news"
PREFERENCES = "preferences"
GLOSSARY = "glossary"
RECALLABLE = (CONVERSATIONS, INSIGHTS, NEWS, GLOSSARY)
SHARED = "*"  # user_id of documents every user may recall

_DAY = 86_400.0


class VectorMemory(Protocol):
    def remember_turn(self, *, thread_id: str, user_id: str, question: str, answer: Answer) -> str | None: ...

    def remember_insight(self, insight: Insight, *, user_id: str | None = None) -> str | None: ...

    def remember_news(self, items: Iterable[NewsItem]) -> list[str]: ...

    def recall(self, query: str, *, collections: Sequence[str] = (CONVERSATIONS, INSIGHTS), k: int = 3,
               user_id: str | None = None, symbol: str | None = None, since: datetime | None = None,
               now: datetime | None = None) -> list[Recall]: ...

    def set_preference(self, user_id: str, key: str, value: str) -> None: ...

    def preferences(self, user_id: str) -> dict[str, str]: ...

    def close(self) -> None: ...


def _utc_now() -> datetime:
    return datetime.now(UTC)


class ChromaMemory:
    """``VectorMemory`` over a Chroma client, with the offline MiniLM embedding function.

    Args:
        client: A Chroma client (``PersistentClient``, ``HttpClient``, ``EphemeralClient``).
        embedding: The embedding function; default a new ``MiniLMEmbedding`` (Chroma's own would download a model).
        half_life_days: Age at which a memory's recency weight halves.
        recency_weight: Share of the ranking score given to recency; the rest is similarity.
        duplicate_similarity: A new document at least this similar to a stored one (same collection, user and
            market) is not added; the stored one is refreshed instead.
        clock: The time written as ``stored_at`` and used as recall's default ``now``; default UTC now.
    """

    def __init__(self, client: Any, embedding: Any | None = None, *, half_life_days: float = 7.0,
                 recency_weight: float = 0.2, duplicate_similarity: float = 0.97,
                 clock: Callable[[], datetime] = _utc_now) -> None:
        from mikey.memory.embeddings import MiniLMEmbedding

        if half_life_days <= 0:
            raise InvalidInput(f"half_life_days must be positive, got {half_life_days}")
        if not 0 <= recency_weight <= 1:
            raise InvalidInput(f"recency_weight must be between 0 and 1, got {recency_weight}")
        if not 0 < duplicate_similarity <= 1:
            raise InvalidInput(f"duplicate_similarity must be in (0, 1], got {duplicate_similarity}")
        self.client = client
        self.embedding = embedding or MiniLMEmbedding()
        self.half_life_days = half_life_days
        self.recency_weight = recency_weight
        self.duplicate_similarity = duplicate_similarity
        self.clock = clock
        self.collections = {
            name: client.get_or_create_collection(name, embedding_function=self.embedding,
                                                  configuration={"hnsw": {"space": "cosine"}})
            for name in (CONVERSATIONS, INSIGHTS, NEWS, PREFERENCES, GLOSSARY)
        }

    # Storing ----------------------------------------------------------------------------------------------------

    def remember_turn(self, *, thread_id: str, user_id: str, question: str, answer: Answer) -> str | None:
        """Store a chat turn for ``user_id``; returns the id stored or refreshed, None when the answer is empty."""
        _require(thread_id=thread_id, user_id=user_id)
        _not_shared(user_id)
        if not answer.text.strip():
            return None
        markets = _turn_symbols(answer)
        meta: dict[str, Any] = {"kind": "turn", "user_id": user_id, "thread_id": thread_id, "group": answer.group,
                                "model": answer.model, **_symbol_meta(markets)}
        if answer.intent is not None:
            meta["intent"] = answer.intent.kind
        if answer.facts is not None and (numbers := answer.facts.numbers()):
            meta["as_of"] = numbers[0].as_of.isoformat()
        return self._remember(CONVERSATIONS, f"Q: {question}\nA: {answer.text}", meta)

    def remember_insight(self, insight: Insight, *, user_id: str | None = None) -> str | None:
        """Store an insight's summary for ``user_id``, or shared with everyone when None; returns its id."""
        if user_id is not None:
            _require(user_id=user_id)
            _not_shared(user_id)
        signal = insight.signal
        text = (f"{insight.symbol} {insight.as_of.date().isoformat()}: {insight.summary.strip()} "
                f"Signal {signal.action} ({signal.strength:.2f}). Risk {insight.risk_level}.")
        if recommendations := [r.strip().rstrip(".") for r in insight.recommendations if r.strip()]:
            text += f" Recommendations: {'; '.join(recommendations)}."
        meta = {"kind": "insight", "user_id": user_id or SHARED, "action": signal.action, "strength": signal.strength,
                "risk_level": insight.risk_level, "risk_score": insight.risk_score,
                "as_of": insight.as_of.isoformat(), "group": insight.group, "model": insight.model,
                **_symbol_meta([insight.symbol])}
        return self._remember(INSIGHTS, text, meta)

    def remember_news(self, items: Iterable[NewsItem]) -> list[str]:
        """Store news items (title and summary), shared by everyone; returns the ids stored or refreshed."""
        ids = []
        for item in list(items):
            text = "\n".join(part for part in (item.title.strip(), item.summary.strip()) if part)
            if not text:
                continue
            meta = {"kind": "news", "user_id": SHARED, "news_id": item.id, "url": item.url, "source": item.source,
                    "published": item.published_at.isoformat(), **_symbol_meta(item.symbols)}
            doc_id = self._remember(NEWS, text, meta)
            if doc_id not in ids:
                ids.append(doc_id)
        return ids

    def index_glossary(self, documents: Sequence[str]) -> int:
        """Add the glossary's documents that are not stored yet (shared by every user); how many were added."""
        collection = self.collections[GLOSSARY]
        ids = [_hash(GLOSSARY, SHARED, text) for text in documents]
        present = set(collection.get(ids=ids, include=[])["ids"])
        new = [(i, t) for i, t in zip(ids, documents, strict=True) if i not in present]
        if new:
            stored_at = self.clock().timestamp()
            collection.add(ids=[i for i, _ in new], documents=[t for _, t in new],
                           embeddings=self.embedding([t for _, t in new]),
                           metadatas=[{"user_id": SHARED, "stored_at": stored_at} for _ in new])
        return len(new)

    def _remember(self, name: str, text: str, meta: dict[str, Any]) -> str:
        """Add ``text`` unless it, or a near-duplicate for the same user and market, is stored; then refresh that."""
        collection = self.collections[name]
        stored_at = self.clock().timestamp()
        doc_id = _hash(name, meta["user_id"], text)
        if collection.get(ids=[doc_id], include=[])["ids"]:
            collection.update(ids=[doc_id], metadatas=[{"stored_at": stored_at}])
            return doc_id
        vector = self.embedding([text])
        if collection.count():
            near = collection.query(query_embeddings=vector, n_results=1, include=["distances"],
                                    where=_where([("user_id", meta["user_id"]), ("symbol", meta.get("symbol"))]))
            if near["ids"][0] and 1.0 - near["distances"][0][0] >= self.duplicate_similarity:
                collection.update(ids=[near["ids"][0][0]], metadatas=[{"stored_at": stored_at}])
                return near["ids"][0][0]
        collection.add(ids=[doc_id], documents=[text], embeddings=vector, metadatas=[{**meta, "stored_at": stored_at}])
        return doc_id

    # Recalling --------------------------------------------------------------------------------------------------

    def recall(self, query: str, *, collections: Sequence[str] = (CONVERSATIONS, INSIGHTS), k: int = 3,
               user_id: str | None = None, symbol: str | None = None, since: datetime | None = None,
               now: datetime | None = None) -> list[Recall]:
        """The ``k`` memories that best answer ``query``, across ``collections``, best first.

        Each candidate is ranked by::

            similarity = 1 - cosine distance(query, document)
            recency    = 0.5 ** (age_days / half_life_days)     # age from stored_at to now, at least 0
            score      = (1 - recency_weight) * similarity + recency_weight * recency

        so of two equally relevant memories the newer wins, and an old one still wins when it is clearly more
        relevant. Filters: ``user_id`` keeps that user's documents and shared ones (news has no owner); ``symbol``
        keeps documents about that market; ``since`` keeps documents stored at or after it. ``now`` defaults to
        the memory's clock (UTC now).
        """
        if not query.strip():
            raise InvalidInput("query is empty")
        if isinstance(collections, str):
            collections = (collections,)
        if not collections:
            raise InvalidInput(f"collections is empty; choose from {', '.join(RECALLABLE)}")
        for name in collections:
            if name not in RECALLABLE:
                raise InvalidInput(f"unknown collection {name!r}; choose from {', '.join(RECALLABLE)}")
        if k < 1:
            raise InvalidInput(f"k must be at least 1, got {k}")
        _aware(since=since, now=now)
        now_ts = (now or self.clock()).timestamp()
        vector: Any = None
        found: list[Recall] = []
        for name in dict.fromkeys(collections):
            collection = self.collections[name]
            count = collection.count()
            if count == 0:
                continue
            vector = vector if vector is not None else self.embedding([query])
            owner = ("user_id", {"$in": [user_id, SHARED]}) if user_id is not None and name != NEWS else None
            where = _where([owner, ("symbols", {"$contains": symbol} if symbol else None),
                            ("stored_at", {"$gte": since.timestamp()} if since else None)])
            result = collection.query(query_embeddings=vector, n_results=min(max(k * 4, 10), count), where=where,
                                      include=["documents", "metadatas", "distances"])
            for text, meta, distance in zip(result["documents"][0], result["metadatas"][0], result["distances"][0],
                                            strict=True):
                found.append(self._ranked(name, text, meta, 1.0 - float(distance), now_ts))
        found.sort(key=lambda hit: hit.score, reverse=True)
        return found[:k]

    def _ranked(self, name: str, text: str, meta: dict[str, Any], similarity: float, now_ts: float) -> Recall:
        stored_at = float(meta["stored_at"])
        recency = 0.5 ** (max(0.0, now_ts - stored_at) / _DAY / self.half_life_days)
        score = (1 - self.recency_weight) * similarity + self.recency_weight * recency
        return Recall(collection=name, text=text, similarity=similarity, score=score,
                      stored_at=datetime.fromtimestamp(stored_at, UTC), symbol=meta.get("symbol"))

    # Preferences ------------------------------------------------------------------------------------------------

    def set_preference(self, user_id: str, key: str, value: str) -> None:
        """Set (or overwrite) one preference of a user, e.g. ``risk_tolerance: low``."""
        _require(user_id=user_id, key=key, value=value)
        _not_shared(user_id)
        key, value = key.strip(), value.strip()
        self.collections[PREFERENCES].upsert(
            ids=[_hash(PREFERENCES, user_id, key)], documents=[f"{key}: {value}"],
            metadatas=[{"user_id": user_id, "key": key, "value": value, "stored_at": self.clock().timestamp()}],
        )

    def preferences(self, user_id: str) -> dict[str, str]:
        """Every preference of a user, as {key: value}."""
        _require(user_id=user_id)
        stored = self.collections[PREFERENCES].get(where={"user_id": user_id}, include=["metadatas"])
        return {str(meta["key"]): str(meta["value"]) for meta in stored["metadatas"]}

    def close(self) -> None:
        """Release the client: a PersistentClient's system (when no other client shares it), an HttpClient's
        connections. Idempotent."""
        close = getattr(self.client, "close", None)
        if callable(close):
            close()
        # chromadb 1.5's HttpClient.close() releases its systems but leaves the httpx sessions of its client and of
        # its admin client open (their sockets stay open until the process exits)
        for client in (self.client, getattr(self.client, "_admin_client", None)):
            session = getattr(getattr(client, "_server", None), "_session", None)
            if session is not None:
                session.close()


def _hash(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


def _require(**fields: str) -> None:
    for name, value in fields.items():
        if not value or not value.strip():
            raise InvalidInput(f"{name} is empty")


def _not_shared(user_id: str) -> None:
    if user_id == SHARED:
        raise InvalidInput(f"user_id {SHARED!r} is reserved for shared memories")


def _aware(**moments: datetime | None) -> None:
    for name, moment in moments.items():
        if moment is not None and moment.tzinfo is None:
            raise InvalidInput(f"{name} must be timezone-aware (UTC)")


def _turn_symbols(answer: Answer) -> list[str]:
    """The markets a turn is about: its facts' market, the markets it compared, then the intent's."""
    markets: list[str] = []
    if answer.facts is not None:
        markets += [answer.facts.symbol, *(other.symbol for other in answer.facts.compared)]
    if answer.intent is not None:
        markets += answer.intent.symbols
    return list(dict.fromkeys(markets))


def _symbol_meta(markets: Sequence[str]) -> dict[str, Any]:
    """``symbol`` (the main market) and ``symbols`` (all, for ``$contains`` filters); nothing when none is known.

    Chroma rejects empty lists as metadata values, so documents about no market carry neither key.
    """
    markets = list(dict.fromkeys(m for m in markets if m))
    return {"symbol": markets[0], "symbols": markets} if markets else {}


def _where(conditions: Iterable[tuple[str, Any] | None]) -> dict[str, Any] | None:
    """A Chroma ``where`` from (field, condition) pairs, skipping None; ``$and`` only for two or more."""
    clauses = [{field: cond} for field, cond in (c for c in conditions if c is not None) if cond is not None]
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


def open_memory(settings: Settings, embedding: Any | None = None) -> ChromaMemory:
    """The configured memory: a Chroma server when ``chroma_url`` is set, else a local PersistentClient.

    Recall ranking follows ``memory_half_life_days`` and ``memory_recency_weight``. ``embedding`` lets a caller share
    one loaded embedding model between stores (tests do).
    """
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
    return ChromaMemory(client, embedding, half_life_days=settings.memory_half_life_days,
                        recency_weight=settings.memory_recency_weight)


def open_enabled_memory(settings: Settings) -> ChromaMemory | None:
    """``open_memory(settings)`` when ``memory_enabled``, else None (then nothing is remembered)."""
    return open_memory(settings) if settings.memory_enabled else None
