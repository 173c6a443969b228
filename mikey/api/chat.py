"""The chat over HTTP: ``POST /v1/chat``, ``POST /v1/chat/stream`` (Server-Sent Events) and ``GET /v1/chat/{id}``.

Endpoints receive one ``ChatService`` through ``Depends(get_chat_service)``; tests override it with a service built
on fake models. The app's lifespan holds a ``LazyChatService`` that builds the real one on the first chat request
(router, ledger, memory, news store and a checkpointer kept open for the app's life), so start-up and the risk
endpoint never pay for LangGraph, LiteLLM or Chroma, and closes it on shutdown.

The graph and the model calls are synchronous: every turn runs in the thread pool, never on the event loop. Turns
on one thread are serialised (``ThreadLocks``): two at once would both start from the same checkpoint and the later
one would drop the other's messages.

Errors found before the first byte (a bad body, an unknown or unusable model group, a service that cannot be built)
are ordinary HTTP errors through the app's handlers. Once a stream has started its status is sent, so a
``MikeyError`` ends it with ``event: error`` and ``{"error": <kind>, "detail": <message>}``.
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Generator
from contextlib import ExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Path, Request, Response
from fastapi.concurrency import iterate_in_threadpool, run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from mikey.domain import Answer
from mikey.errors import ConfigError, DataUnavailable, MikeyError
from mikey.market.feed import PriceFeed
from mikey.settings import Settings

if TYPE_CHECKING:
    from mikey.agents.state import ChatContext, NewsSource, Turn
    from mikey.memory.store import VectorMemory
    from mikey.router.chat_model import ChatModel

MAX_MESSAGE_CHARS = 4000
THREAD_ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,128}$"

ThreadId = Annotated[str, StringConstraints(pattern=THREAD_ID_PATTERN)]


class ChatRequest(BaseModel):
    """One user message for a chat turn."""

    model_config = ConfigDict(extra="forbid")

    message: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_MESSAGE_CHARS)] = (
        Field(description="What the user asks; surrounding whitespace is dropped.",
              examples=["How is SOL doing?"]))
    thread_id: ThreadId | None = Field(
        None, description="Conversation to continue (letters, digits, `_.:-`); default: a new thread.")
    user_id: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)] | None = Field(
        None, description="Whose preferences and memories to use; default: the configured user.")
    model: str | None = Field(None, description="Model group to ask first (gpt-4, claude, gemini, local, offline); "
                                                "default: the configured one.")


class ChatReply(BaseModel):
    """A turn's answer, with the thread to continue."""

    thread_id: str
    answer: Answer


class ThreadHistory(BaseModel):
    """The messages a thread holds, oldest first."""

    thread_id: str
    turns: list[dict[str, Any]]


# The service -------------------------------------------------------------------------------------------------------

@dataclass
class _Waiters:
    lock: asyncio.Lock
    users: int = 0


class ThreadLocks:
    """One lock per conversation thread, held for a whole turn; an entry is dropped when no turn holds or awaits it.

    Waiting happens on the event loop (no thread-pool worker blocks on a busy thread), and the table only ever holds
    the threads that have a turn running or queued.
    """

    def __init__(self) -> None:
        self._entries: dict[str, _Waiters] = {}

    @asynccontextmanager
    async def hold(self, thread_id: str) -> AsyncIterator[None]:
        entry = self._entries.setdefault(thread_id, _Waiters(asyncio.Lock()))
        entry.users += 1
        try:
            async with entry.lock:
                yield
        finally:
            entry.users -= 1
            if entry.users == 0:
                del self._entries[thread_id]

    def __len__(self) -> int:
        return len(self._entries)


class ChatService:
    """What a chat turn needs besides the message: settings, feed, chat model, memory, news and the compiled graph.

    ``resources`` is closed by ``close`` (the real service's checkpointer connection, ledger and news store).
    """

    def __init__(self, settings: Settings, feed: PriceFeed, chat_model: ChatModel, graph: Any, *,
                 memory: VectorMemory | None = None, news: NewsSource | None = None,
                 resources: ExitStack | None = None) -> None:
        self.settings = settings
        self.feed = feed
        self.chat_model = chat_model
        self.graph = graph
        self.memory = memory
        self.news = news
        self.locks = ThreadLocks()
        self._resources = resources or ExitStack()

    def context(self, request: ChatRequest) -> ChatContext:
        """The runtime context of ``request``'s turn; a requested model group that cannot be used is a 422 on
        ``model`` (an unusable configured default is the server's ``ConfigError``)."""
        from mikey.agents.state import ChatContext

        group = request.model or self.settings.default_model
        try:
            self.chat_model.chain("analyze", group)
        except ConfigError as exc:
            if request.model is None:
                raise
            raise RequestValidationError([{"loc": ("body", "model"), "msg": str(exc), "type": "model_group"}]) from exc
        return ChatContext(settings=self.settings, feed=self.feed, chat_model=self.chat_model, group=group,
                           memory=self.memory, news=self.news, user_id=request.user_id)

    async def answer(self, context: ChatContext, message: str, thread_id: str) -> Answer:
        """One turn, run in the thread pool once the thread's earlier turns are done."""
        from mikey.agents.chat import run_turn

        async with self.locks.hold(thread_id):
            return await run_in_threadpool(run_turn, self.graph, context, message, thread_id)

    async def stream(self, context: ChatContext, message: str, thread_id: str) -> AsyncIterator[Any]:
        """One turn, streamed: grounded text pieces, then the ``Answer``. Each step of the graph runs in the thread
        pool; a consumer that goes away stops the turn after the step in progress (the checkpoint keeps the thread
        as it was before the turn unless the turn got as far as its answer)."""
        from mikey.agents.chat import stream_turn

        async with self.locks.hold(thread_id):
            pieces: Generator[Any] = stream_turn(self.graph, context, message, thread_id)  # type: ignore[assignment]
            try:
                async for piece in iterate_in_threadpool(pieces):
                    yield piece
            finally:
                with anyio.CancelScope(shield=True):  # close the graph's run before the next turn may start
                    await run_in_threadpool(pieces.close)

    async def history(self, thread_id: str) -> list[Turn]:
        from mikey.agents.chat import thread_history

        return await run_in_threadpool(thread_history, self.graph, thread_id)

    def close(self) -> None:
        self._resources.close()


def open_chat_service(settings: Settings, feed: PriceFeed) -> ChatService:
    """The real service over ``settings``, on the runtime every entry point shares (``mikey.runtime``): the router
    with the ledger, vector memory when enabled, the market store as news source when one exists, the configured
    checkpointer, the local model's worker warmed; all closed with the service."""
    from mikey.runtime import open_runtime

    runtime = open_runtime(settings, feed=feed)
    try:
        graph = runtime.chat_graph()
        _ = runtime.chat_model.router  # built once here, not by two first turns at once
    except BaseException:
        runtime.close()
        raise
    resources = ExitStack()
    resources.callback(runtime.close)
    return ChatService(settings, feed, runtime.chat_model, graph, memory=runtime.memory, news=runtime.news,
                       resources=resources)


class LazyChatService:
    """Builds the ``ChatService`` on first use (in the thread pool, once, under a lock) and closes it at shutdown."""

    def __init__(self, settings: Settings, feed: PriceFeed,
                 factory: Callable[[Settings, PriceFeed], ChatService] = open_chat_service) -> None:
        self.settings = settings
        self.feed = feed
        self._factory = factory
        self._service: ChatService | None = None
        self._closed = False
        self._lock = threading.Lock()

    @property
    def built(self) -> bool:
        return self._service is not None

    async def get(self) -> ChatService:
        return self._service or await run_in_threadpool(self._build)

    def _build(self) -> ChatService:
        with self._lock:
            if self._closed:
                raise ConfigError("the chat service is shutting down")
            if self._service is None:
                self._service = self._factory(self.settings, self.feed)
            return self._service

    def close(self) -> None:
        with self._lock:
            service, self._service, self._closed = self._service, None, True
        if service is not None:
            service.close()


# The dependency: the lifespan's lazily built service; tests override it with one built from fakes.

async def get_chat_service(request: Request) -> ChatService:
    return await request.state.chat.get()


# Endpoints -------------------------------------------------------------------------------------------------------

router = APIRouter(prefix="/v1/chat", tags=["chat"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    422: {"description": "Invalid body or model group: each field with its reason"},
    502: {"description": "Every model group asked failed"},
    429: {"description": "A spend limit would be broken"},
}


@router.post("", response_model=ChatReply, responses=_ERRORS, summary="One chat turn: grounded words and their facts")
async def chat(body: ChatRequest, service: Annotated[ChatService, Depends(get_chat_service)]) -> Response:
    """Answer ``message`` on ``thread_id`` (a new thread when omitted). Trades are only proposed, never executed."""
    context = service.context(body)
    thread_id = body.thread_id or _new_thread_id()
    answer = await service.answer(context, body.message, thread_id)
    return Response(_reply_json(thread_id, answer), media_type="application/json")


@router.post("/stream", summary="One chat turn as Server-Sent Events", responses={
    **_ERRORS, 200: {"description": "`event: text` per grounded piece, then `event: answer` (the body of POST "
                                    "/v1/chat), or `event: error` if the turn fails once started. `event: reset` "
                                    "(`{\"reason\": ...}`) withdraws the text so far: the model failed mid-answer "
                                    "and the offline writer's text follows",
                     "content": {"text/event-stream": {}}}})
async def chat_stream(body: ChatRequest, service: Annotated[ChatService, Depends(get_chat_service)]
                      ) -> StreamingResponse:
    """The turn of ``POST /v1/chat``, with the words sent as they are written and grounded (sentence by sentence,
    so no unchecked number is ever sent)."""
    context = service.context(body)  # before the first byte: a bad group is still a 422
    thread_id = body.thread_id or _new_thread_id()
    events = _events(service.stream(context, body.message, thread_id), thread_id)
    return StreamingResponse(events, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no",
                                      "X-Thread-Id": thread_id})


@router.get("/{thread_id}", response_model=ThreadHistory, responses={404: {"description": "No such thread"}},
            summary="The messages a thread holds")
async def chat_history(thread_id: Annotated[str, Path(pattern=THREAD_ID_PATTERN)],
                       service: Annotated[ChatService, Depends(get_chat_service)]) -> ThreadHistory:
    turns = await service.history(thread_id)
    if not turns:
        raise DataUnavailable(f"no conversation stored for thread {thread_id!r}")
    return ThreadHistory(thread_id=thread_id, turns=[dict(turn) for turn in turns])


def _new_thread_id() -> str:
    return uuid.uuid4().hex


def _reply_json(thread_id: str, answer: Answer) -> str:
    return ChatReply(thread_id=thread_id, answer=answer).model_dump_json()


async def _events(pieces: AsyncIterator[Any], thread_id: str) -> AsyncIterator[str]:
    from mikey.agents.chat import Reset

    try:
        async for piece in pieces:
            if isinstance(piece, str):
                yield _event("text", json.dumps({"text": piece}))
            elif isinstance(piece, Reset):  # the text events so far are withdrawn; the offline writer's follow
                yield _event("reset", json.dumps({"reason": piece.reason}))
            else:
                yield _event("answer", _reply_json(thread_id, piece))
    except MikeyError as exc:
        yield _event("error", json.dumps({"error": type(exc).__name__, "detail": str(exc)}))


def _event(name: str, data: str) -> str:
    return f"event: {name}\ndata: {data}\n\n"  # JSON data holds no raw newline: one data line per event
