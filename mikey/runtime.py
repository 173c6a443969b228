"""One runtime for every entry point: the wiring of MIKEY's flows, built once from settings and closed once.

The CLI chat, ``mikey insights``, the HTTP chat service (and positions, evals and the service to come) all need the
same parts: the price feed, the ledger and the router-backed model over it, the vector memory when enabled, the market
store as the news source when one exists, the chat graph over the configured checkpointer, and the local model's
worker warmed when a chain may ask it. ``open_runtime`` builds them with one validation of the chosen model group, and
``Runtime.close`` releases them in reverse order, the process-wide state too (the ledger's registration with LiteLLM,
the response cache the router installed, the local worker it started).

Parts a caller may not need are opened on first use: the chat graph (and its checkpointer) by ``chat_graph``; the
executor (proposals, gates and the configured broker, reconciled with the broker when it opens) by ``executor``; the
router (and litellm's import) by the first model call. The memory and the news store are opened by ``open_runtime``
unless the caller passes its own (the CLI opens the memory in the background and hands it over).
"""

from __future__ import annotations

import threading
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING, Any

from mikey.errors import ConfigError, MikeyError
from mikey.settings import Settings

if TYPE_CHECKING:
    from collections.abc import Iterator

    from mikey.agents.pipeline import PipelineContext
    from mikey.agents.state import ChatContext, NewsSource
    from mikey.execution.executor import Executor
    from mikey.market.feed import PriceFeed
    from mikey.memory.store import VectorMemory
    from mikey.router.chat_model import RouterChatModel
    from mikey.router.ledger import Ledger


class Runtime:
    """The parts of one running MIKEY (see the module's docstring); thread-safe to share between requests."""

    def __init__(self, settings: Settings, *, group: str | None, feed: PriceFeed, ledger: Ledger,
                 chat_model: RouterChatModel, memory: VectorMemory | None, news: NewsSource | None,
                 resources: ExitStack) -> None:
        self.settings = settings
        self.group = group
        self.feed = feed
        self.ledger = ledger
        self.chat_model = chat_model
        self.memory = memory
        self.news = news
        self._resources = resources
        self._graph: Any = None
        self._executor: Executor | None = None
        self.executor_error: str | None = None
        self._lock = threading.Lock()
        self._closed = False

    def chat_graph(self) -> Any:
        """The compiled chat graph over the configured checkpointer (opened on first use, kept until close)."""
        with self._lock:
            if self._closed:
                raise ConfigError("the runtime is closed")
            if self._graph is None:
                from mikey.agents.chat import build_chat_graph, open_checkpointer

                self._graph = build_chat_graph(self._resources.enter_context(open_checkpointer(self.settings)))
            return self._graph

    def executor(self) -> Executor:
        """Proposals, gates and the configured broker (opened on first use, kept until close).

        Opening it reconciles the proposals a crashed process left submitted with the broker's record of them.
        """
        with self._lock:
            if self._closed:
                raise ConfigError("the runtime is closed")
            if self._executor is None:
                from mikey.execution.executor import Executor

                executor = Executor.from_settings(self.settings, feed=self.feed)
                self._resources.callback(executor.close)
                executor.reconcile()
                self._executor = executor
            return self._executor

    def chat_context(self, *, user_id: str | None = None, group: str | None = None) -> ChatContext:
        """The context of chat turns for ``user_id`` (default: the settings' user), asking ``group`` first.

        Trades are proposed and approved through the executor; when its broker cannot open (a Solana broker with no
        wallet), chat goes on without it and ``executor_error`` says why.
        """
        from mikey.agents.state import ChatContext

        try:
            executor = self.executor()
        except MikeyError as exc:
            executor, self.executor_error = None, f"trading is off: {exc}"
        return ChatContext(settings=self.settings, feed=self.feed, chat_model=self.chat_model,
                           group=group or self.group, memory=self.memory, news=self.news, user_id=user_id,
                           executor=executor)

    def pipeline_context(self) -> PipelineContext:
        """The context of the analysis pipeline (news is the caller's: it picks the items per watchlist)."""
        from mikey.agents.pipeline import PipelineContext

        return PipelineContext(settings=self.settings, feed=self.feed, chat_model=self.chat_model, group=self.group,
                               memory=self.memory)

    def close(self) -> None:
        """Release everything, newest first; closing twice is harmless."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._graph = None
        self._resources.close()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_UNSET: Any = object()


def open_runtime(settings: Settings, *, group: str | None = None, feed: PriceFeed | None = None,
                 memory: VectorMemory | None = _UNSET, news: NewsSource | None = _UNSET,
                 warm_local: bool = True) -> Runtime:
    """Build the runtime: ``ConfigError`` at once for an unknown or unusable ``group`` (default: the settings').

    ``memory`` and ``news`` default to the configured ones (``None`` turns either off); ``warm_local`` starts the
    local model's worker when the analyze chain may ask it, so that it loads while the rest does.
    """
    from mikey.market.feeds import open_feed
    from mikey.router.chat_model import RouterChatModel
    from mikey.router.ledger import Ledger

    group = group or settings.default_model
    stack = ExitStack()
    try:
        ledger = Ledger(settings.ledger_db)
        stack.callback(ledger.close)
        chat_model = RouterChatModel(settings, ledger=ledger)
        stack.callback(chat_model.close)
        chain = chat_model.chain("analyze", group)  # the one validation of the chosen group
        if warm_local:
            from mikey.router.local import warm

            if (worker := warm(settings, chain)) is not None:
                stack.callback(worker.close)
        if memory is _UNSET:
            from mikey.memory.store import open_enabled_memory

            memory = open_enabled_memory(settings)
        if memory is not None:
            stack.callback(memory.close)
        if news is _UNSET:
            from mikey.market.store import open_existing_store

            news = open_existing_store(settings)
        if news is not None and hasattr(news, "close"):
            stack.callback(news.close)
        feed = feed if feed is not None else open_feed(settings)
    except BaseException:
        stack.close()
        raise
    return Runtime(settings, group=group, feed=feed, ledger=ledger, chat_model=chat_model, memory=memory, news=news,
                   resources=stack)


@contextmanager
def running(settings: Settings, **options: Any) -> Iterator[Runtime]:
    """``open_runtime`` as a context: closed when the block ends, however it ends."""
    runtime = open_runtime(settings, **options)
    try:
        yield runtime
    finally:
        runtime.close()
