"""Fake LLM provider servers on 127.0.0.1 that speak the real OpenAI, Anthropic and Gemini wire formats.

``router/fake.py`` plugs a scripted model in *behind* LiteLLM's provider layer, so LiteLLM's HTTP clients, SSE
parsers and error mapping never run. This module fakes the provider *in front of* that layer instead: LiteLLM is
pointed at :attr:`FakeProviderServer.api_base` and does exactly what it does against the real API, so tests and
benchmarks see its real retries, timeouts, exception classes and stream assembly under scripted faults.

Each request consumes one scripted behaviour (a :class:`Reply` or a :class:`Fault`), in order; when the queue is
empty :attr:`FakeProviderServer.default` answers. The server runs aiohttp on its own event loop in a daemon thread,
so synchronous tests, ``litellm.acompletion`` and benchmarks can all use it. Paths served (``{api_base}`` is what
LiteLLM is given): OpenAI ``POST /v1/chat/completions`` (api_base ``/v1``); Anthropic ``POST /v1/messages`` (LiteLLM
appends ``/v1/messages`` to the bare host); Gemini ``POST /v1beta/models/{model}:generateContent`` and
``:streamGenerateContent?alt=sse`` (LiteLLM appends ``/models/{model}:{action}`` to api_base ``/v1beta``).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

Flavour = Literal["openai", "anthropic", "gemini"]
FaultKind = Literal["status", "hang", "malformed_json", "cut_stream"]


@dataclass(frozen=True)
class ToolCall:
    """A function call the fake model makes; ``arguments`` are sent JSON-encoded (OpenAI) or as an object."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    id: str | None = None  # generated in each provider's style when None


@dataclass(frozen=True)
class Reply:
    """A successful answer. Token counts default to word counts, which is close enough for cost and ledger tests.

    ``delay`` is waited before the response, or, when streaming, after the headers and before the first chunk (the
    time-to-first-token a benchmark measures); ``chunk_delay`` is waited between chunks. ``chunk_words`` is how many
    whitespace-separated words each streamed text chunk carries.
    """

    text: str = ""
    tool_calls: Sequence[ToolCall] = ()
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    delay: float = 0.0
    chunk_delay: float = 0.0
    chunk_words: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "tool_calls", tuple(self.tool_calls))
        if self.chunk_words < 1:
            raise ValueError("chunk_words must be at least 1")

    def usage(self, body: Any) -> tuple[int, int]:
        """(prompt, completion) tokens: the scripted counts, else words in the request's messages and in this reply."""
        prompt = self.prompt_tokens if self.prompt_tokens is not None else _content_words(body)
        completion = self.completion_tokens
        if completion is None:
            completion = len(self.text.split()) + sum(len(json.dumps(c.arguments).split()) for c in self.tool_calls)
        return prompt, completion


@dataclass(frozen=True)
class Fault:
    """A failure, built with the class methods. ``cut_stream`` and ``malformed_json`` replay ``reply`` (default:
    the server's ``default``) up to the point of failure."""

    kind: FaultKind
    code: int = 200
    message: str = ""
    retry_after: float | None = None
    after_chunks: int = 0
    reply: Reply | None = None

    @classmethod
    def status(cls, code: int, message: str | None = None) -> Fault:
        """An HTTP error with the provider's own error body (401, 500, 503, 529...)."""
        return cls("status", code=code, message=message or f"fake provider error {code}")

    @classmethod
    def rate_limited(cls, retry_after: float = 1, message: str = "Rate limit reached (fake)") -> Fault:
        """A 429 with a ``Retry-After`` header, as every provider's rate limiter sends it."""
        return cls("status", code=429, message=message, retry_after=retry_after)

    @classmethod
    def hang(cls) -> Fault:
        """Accept the request and never answer; released (connection dropped) when the server stops."""
        return cls("hang")

    @classmethod
    def malformed_json(cls) -> Fault:
        """A 200 whose body (or first SSE event) is truncated JSON, as a broken gateway might send."""
        return cls("malformed_json")

    @classmethod
    def cut_stream(cls, after_chunks: int = 1, reply: Reply | None = None) -> Fault:
        """Send ``after_chunks`` valid SSE events, then drop the connection without the terminating event.

        The terminator (``[DONE]``, ``message_stop``, Gemini's chunk with ``finishReason``) is never sent, however
        large ``after_chunks`` is. On a non-streaming request, half the JSON body is sent before the drop.
        """
        return cls("cut_stream", after_chunks=after_chunks, reply=reply)


Behaviour = Reply | Fault


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the provider saw it: what LiteLLM sent, for asserting model names, messages and auth."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    body: Any  # parsed JSON, or None when the body was not JSON
    time: float  # time.monotonic() on arrival


def _content_words(node: Any, counting: bool = False) -> int:
    """Words in message text only (``content``/``text``/``system`` values), not roles, model names or schemas."""
    if isinstance(node, str):
        return len(node.split()) if counting else 0
    if isinstance(node, dict):
        return sum(_content_words(v, counting or k in ("content", "text", "system")) for k, v in node.items()
                   if k in ("messages", "contents", "parts", "content", "text", "system", "systemInstruction")
                   or counting)
    if isinstance(node, list):
        return sum(_content_words(v, counting) for v in node)
    return 0


def _text_pieces(text: str, words: int) -> list[str]:
    """Split ``text`` into chunks of ``words`` words whose concatenation is exactly ``text``."""
    tokens = re.findall(r"\s*\S+|\s+$", text)
    return ["".join(tokens[i:i + words]) for i in range(0, len(tokens), words)]


def _json_pieces(value: dict[str, Any], size: int = 12) -> list[str]:
    """Tool arguments streamed in fragments, so the client's accumulator is exercised."""
    raw = json.dumps(value)
    return [raw[i:i + size] for i in range(0, len(raw), size)]


SseEvent = tuple[str | None, Any]  # (SSE event name, JSON payload or raw data string)


class _Wire:
    """One provider's wire format: success bodies, SSE event lists and error bodies."""

    path: str
    api_base_suffix: str
    eol = "\n"

    def __init__(self) -> None:
        self._ids = itertools.count(1)

    def next_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):06d}fake"

    def is_stream(self, request: web.Request, body: Any) -> bool:
        return bool(isinstance(body, dict) and body.get("stream"))

    def model(self, request: web.Request, body: Any) -> str:
        return str(body.get("model", "")) if isinstance(body, dict) else ""

    def response(self, reply: Reply, model: str, body: Any) -> dict[str, Any]:
        raise NotImplementedError

    def events(self, reply: Reply, model: str, body: Any) -> list[SseEvent]:
        """The whole stream; its last element is the terminator that ``cut_stream`` never sends."""
        raise NotImplementedError

    def encode(self, event: SseEvent, truncate: bool = False) -> bytes:
        """One SSE event; ``truncate`` cuts its JSON in half, which is how ``malformed_json`` streams."""
        name, data = event
        payload = data if isinstance(data, str) else json.dumps(data)
        payload = payload[: len(payload) // 2] if truncate else payload
        head = f"event: {name}{self.eol}" if name else ""
        return f"{head}data: {payload}{self.eol}{self.eol}".encode()

    def error(self, code: int, message: str) -> dict[str, Any]:
        raise NotImplementedError


class _OpenAI(_Wire):
    path = "/v1/chat/completions"
    api_base_suffix = "/v1"
    _ERRORS = {400: ("invalid_request_error", None), 401: ("invalid_request_error", "invalid_api_key"),
               403: ("permission_error", None), 404: ("invalid_request_error", "model_not_found"),
               429: ("requests", "rate_limit_exceeded")}

    def _tool_calls(self, reply: Reply) -> list[dict[str, Any]]:
        return [{"id": c.id or self.next_id("call_"), "type": "function",
                 "function": {"name": c.name, "arguments": json.dumps(c.arguments)}} for c in reply.tool_calls]

    def response(self, reply: Reply, model: str, body: Any) -> dict[str, Any]:
        prompt, completion = reply.usage(body)
        message: dict[str, Any] = {"role": "assistant", "content": reply.text or None, "refusal": None}
        if reply.tool_calls:
            message["tool_calls"] = self._tool_calls(reply)
        return {"id": self.next_id("chatcmpl-"), "object": "chat.completion", "created": int(time.time()),
                "model": model, "system_fingerprint": "fp_fake",
                "choices": [{"index": 0, "message": message, "logprobs": None,
                             "finish_reason": "tool_calls" if reply.tool_calls else "stop"}],
                "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                          "total_tokens": prompt + completion}}

    def events(self, reply: Reply, model: str, body: Any) -> list[SseEvent]:
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        base = {"id": self.next_id("chatcmpl-"), "object": "chat.completion.chunk", "created": int(time.time()),
                "model": model, "system_fingerprint": "fp_fake"}
        extra = {"usage": None} if include_usage else {}

        def chunk(delta: dict[str, Any], finish: str | None = None) -> SseEvent:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            return None, {**base, "choices": [choice], **extra}

        out = [chunk({"role": "assistant", "content": "", "refusal": None})]
        out += [chunk({"content": piece}) for piece in _text_pieces(reply.text, reply.chunk_words)]
        for index, call in enumerate(self._tool_calls(reply)):
            head = {**call, "function": {"name": call["function"]["name"], "arguments": ""}}
            out.append(chunk({"tool_calls": [{"index": index, **head}]}))
            out += [chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
                    for piece in _json_pieces(reply.tool_calls[index].arguments)]
        out.append(chunk({}, "tool_calls" if reply.tool_calls else "stop"))
        if include_usage:
            prompt, completion = reply.usage(body)
            usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
            out.append((None, {**base, "choices": [], "usage": usage}))
        return [*out, (None, "[DONE]")]

    def error(self, code: int, message: str) -> dict[str, Any]:
        kind, err_code = self._ERRORS.get(code, ("server_error", None))
        return {"error": {"message": message, "type": kind, "param": None, "code": err_code}}


class _Anthropic(_Wire):
    path = "/v1/messages"
    api_base_suffix = ""
    _ERRORS = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error", 529: "overloaded_error"}

    def _blocks(self, reply: Reply) -> list[dict[str, Any]]:
        blocks: list[dict[str, Any]] = [{"type": "text", "text": reply.text}] if reply.text else []
        return blocks + [{"type": "tool_use", "id": c.id or self.next_id("toolu_"), "name": c.name,
                          "input": c.arguments} for c in reply.tool_calls]

    def _message(self, reply: Reply, model: str, content: list[dict[str, Any]], stop: str | None,
                 usage: dict[str, int]) -> dict[str, Any]:
        return {"id": self.next_id("msg_"), "type": "message", "role": "assistant", "model": model,
                "content": content, "stop_reason": stop, "stop_sequence": None, "usage": usage}

    def response(self, reply: Reply, model: str, body: Any) -> dict[str, Any]:
        prompt, completion = reply.usage(body)
        stop = "tool_use" if reply.tool_calls else "end_turn"
        return self._message(reply, model, self._blocks(reply), stop,
                             {"input_tokens": prompt, "output_tokens": completion})

    def events(self, reply: Reply, model: str, body: Any) -> list[SseEvent]:
        prompt, completion = reply.usage(body)
        start = self._message(reply, model, [], None, {"input_tokens": prompt, "output_tokens": 1})
        out = [("message_start", {"type": "message_start", "message": start}), ("ping", {"type": "ping"})]
        for index, block in enumerate(self._blocks(reply)):
            if block["type"] == "text":
                opening = {**block, "text": ""}
                deltas = [{"type": "text_delta", "text": p} for p in _text_pieces(reply.text, reply.chunk_words)]
            else:
                opening = {**block, "input": {}}
                deltas = [{"type": "input_json_delta", "partial_json": p} for p in _json_pieces(block["input"])]
            out.append(("content_block_start", {"type": "content_block_start", "index": index,
                                                "content_block": opening}))
            out += [("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d})
                    for d in deltas]
            out.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
        stop = "tool_use" if reply.tool_calls else "end_turn"
        out.append(("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None},
                                       "usage": {"output_tokens": completion}}))
        return [*out, ("message_stop", {"type": "message_stop"})]

    def error(self, code: int, message: str) -> dict[str, Any]:
        return {"type": "error", "error": {"type": self._ERRORS.get(code, "api_error"), "message": message}}


class _Gemini(_Wire):
    path = r"/v1beta/models/{model:[^/:]+}:{action:generateContent|streamGenerateContent}"
    api_base_suffix = "/v1beta"
    eol = "\r\n"  # Google frames SSE with CRLF
    _STATUSES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                 429: "RESOURCE_EXHAUSTED", 499: "CANCELLED", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}

    def is_stream(self, request: web.Request, body: Any) -> bool:
        # Real Gemini answers a JSON array without ``alt=sse``; LiteLLM always asks for SSE, so only SSE is served.
        return request.match_info["action"] == "streamGenerateContent"

    def model(self, request: web.Request, body: Any) -> str:
        return request.match_info["model"]

    def _chunk(self, parts: list[dict[str, Any]], model: str, response_id: str, finish: str | None = None,
               usage: dict[str, int] | None = None) -> dict[str, Any]:
        candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
        if finish:
            candidate["finishReason"] = finish
        out: dict[str, Any] = {"candidates": [candidate], "modelVersion": model, "responseId": response_id}
        return {**out, "usageMetadata": usage} if usage else out

    def _usage(self, reply: Reply, body: Any) -> dict[str, int]:
        prompt, completion = reply.usage(body)
        return {"promptTokenCount": prompt, "candidatesTokenCount": completion, "totalTokenCount": prompt + completion}

    def _calls(self, reply: Reply) -> list[dict[str, Any]]:
        return [{"functionCall": {"name": c.name, "args": c.arguments}} for c in reply.tool_calls]

    def response(self, reply: Reply, model: str, body: Any) -> dict[str, Any]:
        parts = ([{"text": reply.text}] if reply.text else []) + self._calls(reply)
        return self._chunk(parts, model, self.next_id("resp-"), "STOP", self._usage(reply, body))

    def events(self, reply: Reply, model: str, body: Any) -> list[SseEvent]:
        response_id = self.next_id("resp-")
        parts = [[{"text": p}] for p in _text_pieces(reply.text, reply.chunk_words)] + [[c] for c in self._calls(reply)]
        last = parts.pop() if parts else [{"text": ""}]
        out = [self._chunk(p, model, response_id) for p in parts]
        out.append(self._chunk(last, model, response_id, "STOP", self._usage(reply, body)))
        return [(None, c) for c in out]

    def error(self, code: int, message: str) -> dict[str, Any]:
        return {"error": {"code": code, "message": message, "status": self._STATUSES.get(code, "INTERNAL")}}


_WIRES: dict[Flavour, type[_Wire]] = {"openai": _OpenAI, "anthropic": _Anthropic, "gemini": _Gemini}


class FakeProviderServer:
    """One fake provider on 127.0.0.1. Script it with :meth:`push`; read what it received in :attr:`requests`.

    Use as a context manager, or call :meth:`start` and :meth:`stop`; :meth:`stop` also releases hung requests.
    """

    def __init__(self, flavour: Flavour, default: Behaviour | None = None) -> None:
        self.flavour: Flavour = flavour
        self.default: Behaviour = default or Reply("ok")
        self.requests: list[RecordedRequest] = []
        self._wire = _WIRES[flavour]()
        self._script: deque[Behaviour] = deque()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._stopping: asyncio.Event | None = None
        self.port = 0

    @property
    def api_base(self) -> str:
        """What to pass as LiteLLM's ``api_base`` so it requests this server's real-format path."""
        if not self.port:
            raise RuntimeError("FakeProviderServer is not started")
        return f"http://127.0.0.1:{self.port}{self._wire.api_base_suffix}"

    def push(self, *behaviours: Behaviour) -> None:
        """Queue behaviours; each request consumes the next one."""
        self._script.extend(behaviours)

    def __enter__(self) -> FakeProviderServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> FakeProviderServer:
        """Bind an ephemeral port and serve from a daemon thread; returns self once it accepts connections."""
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name=f"fake-{self.flavour}", daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), loop).result(timeout=10)
        return self

    def stop(self) -> None:
        """Release hung requests, close every connection and the loop. Idempotent."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
        self._loop = self._thread = None

    async def _serve(self) -> None:
        self._stopping = asyncio.Event()
        app = web.Application()
        app.router.add_post(self._wire.path, self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]

    async def _shutdown(self) -> None:
        assert self._stopping is not None and self._runner is not None
        self._stopping.set()
        await self._runner.cleanup()

    def _record(self, request: web.Request, body: Any) -> None:
        self.requests.append(RecordedRequest(request.method, request.path, dict(request.query),
                                             {k.lower(): v for k, v in request.headers.items()}, body,
                                             time.monotonic()))

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = None
        self._record(request, body)
        behaviour = self._script.popleft() if self._script else self.default
        stream, model = self._wire.is_stream(request, body), self._wire.model(request, body)
        if isinstance(behaviour, Reply):
            return await self._reply(request, behaviour, model, body, stream)
        if behaviour.kind == "status":
            headers = {"Retry-After": f"{behaviour.retry_after:g}"} if behaviour.retry_after is not None else {}
            return web.json_response(self._wire.error(behaviour.code, behaviour.message), status=behaviour.code,
                                     headers=headers)
        if behaviour.kind == "hang":
            assert self._stopping is not None
            await self._stopping.wait()
            return await self._drop(request, web.StreamResponse())
        reply = behaviour.reply or (self.default if isinstance(self.default, Reply) else Reply("ok"))
        if behaviour.kind == "malformed_json":
            if stream:  # the middle event arrives with half its JSON; the rest of the stream is intact
                events = self._wire.events(reply, model, body)
                broken = (len(events) - 1) // 2
                return await self._stream(request, [self._wire.encode(e, i == broken) for i, e in enumerate(events)],
                                          reply)
            return web.Response(text=json.dumps(self._wire.response(reply, model, body))[:40],
                                content_type="application/json")
        if stream:
            events = self._wire.events(reply, model, body)[:-1][:behaviour.after_chunks]
            return await self._stream(request, [self._wire.encode(e) for e in events], reply, cut=True)
        data = json.dumps(self._wire.response(reply, model, body)).encode()
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = len(data)
        await response.prepare(request)
        await response.write(data[: len(data) // 2])
        return await self._drop(request, response)

    async def _reply(self, request: web.Request, reply: Reply, model: str, body: Any,
                     stream: bool) -> web.StreamResponse:
        if stream:
            return await self._stream(request, [self._wire.encode(e) for e in self._wire.events(reply, model, body)],
                                      reply)
        await asyncio.sleep(reply.delay)
        return web.json_response(self._wire.response(reply, model, body))

    async def _stream(self, request: web.Request, events: Iterable[bytes], reply: Reply,
                      cut: bool = False) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        await asyncio.sleep(reply.delay)
        for i, event in enumerate(events):
            if i and reply.chunk_delay:
                await asyncio.sleep(reply.chunk_delay)
            await response.write(event)
        if cut:
            return await self._drop(request, response)
        await response.write_eof()
        return response

    async def _drop(self, request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
        """Abort the TCP connection mid-response, as a crashed upstream or a killed proxy does."""
        if request.transport is not None:
            request.transport.abort()
        return response
