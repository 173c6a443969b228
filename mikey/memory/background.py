"""The vector memory of a chat in the terminal: opened in a background thread, written after the answer is shown.

Opening Chroma and loading the embedding model take about a second, and a chat turn first needs them when it reads
the user's preferences. ``BackgroundMemory`` starts opening them as soon as a chat starts, while the models and the
chat graph load, and the first read waits for it. Writes (a turn's summary, the headlines it read, a stated
preference) are queued to the same thread, in order, and return at once, so the answer is shown without waiting for
them. Nothing is skipped or lost:

- every read waits for the writes queued before it, so a turn sees what the previous one stored;
- ``flush()`` waits for the queued writes and raises the first that failed (each failure is raised once);
  ``close()`` flushes, then closes the memory; the writer thread is never a daemon, so even an interpreter that
  exits on an error runs every queued write first.

The ids a write stores are known only once it has run, so the write methods here return None (``remember_news`` an
empty list); callers that need the ids use ``ChromaMemory`` directly.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mikey.domain import Answer, Insight, NewsItem, Recall
    from mikey.memory.store import VectorMemory
    from mikey.settings import Settings


class BackgroundMemory:
    """A ``VectorMemory`` opened by ``opener`` in a thread of its own, whose writes run there after the caller moves on.

    Args:
        opener: Builds the memory (in the background thread); what it raises is raised by ``ready()`` and reads.
    """

    def __init__(self, opener: Callable[[], VectorMemory]) -> None:
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mikey-memory")
        self._opened: Future[VectorMemory] = self._thread.submit(opener)
        self._pending: list[Future[Any]] = []
        self._failures: list[BaseException] = []
        self._lock = threading.Lock()

    def ready(self) -> VectorMemory:
        """The opened memory, once the writes queued so far have run; raises what opening it raised."""
        memory = self._opened.result()
        self._settle()
        return memory

    def _settle(self) -> None:
        """Wait for the queued writes; keep their failures for ``flush()``."""
        with self._lock:
            pending, self._pending = self._pending, []
        failures = [exc for exc in (write.exception() for write in pending) if exc is not None]
        with self._lock:
            self._failures += failures

    def _write(self, call: Callable[[VectorMemory], Any]) -> None:
        with self._lock:
            self._pending.append(self._thread.submit(lambda: call(self._opened.result())))

    def flush(self) -> None:
        """Wait for every queued write; raise the first one that failed since the last flush."""
        self._settle()
        with self._lock:
            failures, self._failures = self._failures, []
        if failures:
            raise failures[0]

    def close(self) -> None:
        """Flush, then close the memory (waiting for it to open if it is still opening). Raises a failed write."""
        try:
            self.flush()
        finally:
            if self._opened.exception() is None:
                self._opened.result().close()
            self._thread.shutdown(wait=True)

    # VectorMemory: writes are queued -----------------------------------------------------------------------------

    def remember_turn(self, *, thread_id: str, user_id: str, question: str, answer: Answer) -> str | None:
        self._write(lambda m: m.remember_turn(thread_id=thread_id, user_id=user_id, question=question, answer=answer))
        return None

    def remember_insight(self, insight: Insight, *, user_id: str | None = None) -> str | None:
        self._write(lambda m: m.remember_insight(insight, user_id=user_id))
        return None

    def remember_news(self, items: Iterable[NewsItem]) -> list[str]:
        items = list(items)
        self._write(lambda m: m.remember_news(items))
        return []

    def set_preference(self, user_id: str, key: str, value: str) -> None:
        self._write(lambda m: m.set_preference(user_id, key, value))

    # VectorMemory: reads wait for the writes queued before them -------------------------------------------------

    def recall(self, query: str, **options: Any) -> list[Recall]:
        """``VectorMemory.recall`` (same options), after the writes queued before it."""
        return self.ready().recall(query, **options)

    def preferences(self, user_id: str) -> dict[str, str]:
        return self.ready().preferences(user_id)


def open_in_background(settings: Settings) -> BackgroundMemory | None:
    """The configured memory (``open_memory``) opened in the background, its embedding model loaded there too;
    None when ``memory_enabled`` is off."""
    if not settings.memory_enabled:
        return None

    def opener() -> VectorMemory:
        from mikey.memory.embeddings import MiniLMEmbedding
        from mikey.memory.store import open_memory

        embedding = MiniLMEmbedding()
        embedding.load()
        return open_memory(settings, embedding)

    return BackgroundMemory(opener)
