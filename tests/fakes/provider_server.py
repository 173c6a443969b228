"""Fake LLM provider servers on 127.0.0.1 that speak the real OpenAI, Anthropic and Gemini wire formats.

``mikey/router/fake.py`` sits *behind* LiteLLM's provider layer, so LiteLLM's HTTP clients, SSE parsers and error
mapping never run. These servers sit *in front of* it: given :attr:`FakeProviderServer.api_base`, LiteLLM does exactly
what it does against the real API, so tests and benchmarks see its real retries, timeouts, exception classes and
stream assembly under scripted faults. Each request consumes one scripted :class:`Reply` or :class:`Fault`, in order,
then :attr:`FakeProviderServer.default` answers. aiohttp runs on its own loop in a daemon thread, so sync and async
callers alike can use it. Paths served, as LiteLLM builds them from ``api_base``:

- openai: ``POST /v1/chat/completions`` (api_base ``http://127.0.0.1:PORT/v1``; the OpenAI SDK appends the route);
- anthropic: ``POST /v1/messages`` (api_base is the bare host; LiteLLM appends ``/v1/messages``);
- gemini: ``POST /v1beta/models/{model}:generateContent`` and ``:streamGenerateContent?alt=sse`` (api_base ends in
  ``/v1beta``; LiteLLM appends ``/models/{model}:{action}`` and sends the key as ``x-goog-api-key``).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

from tests.fakes.loopback import LoopbackServer

Flavour = Literal["openai", "anthropic", "gemini"]
SseEvent = tuple[str | None, Any]  # (SSE event name or None, JSON payload or a raw data string)


@dataclass(frozen=True)
class ToolCall:
    """A function call the fake model makes; ``id`` is generated in the provider's style when None."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    id: str | None = None


@dataclass(frozen=True)
class Reply:
    """A successful answer; token counts default to word counts, close enough for cost and ledger tests. ``delay``
    comes before the JSON response, or after the SSE headers (time to first token); ``chunk_delay`` between chunks,
    each carrying ``chunk_words`` words."""

    text: str = ""
    tool_calls: Sequence[ToolCall] = ()
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    delay: float = 0.0
    chunk_delay: float = 0.0
    chunk_words: int = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "tool_calls", tuple(self.tool_calls))  # a queued reply never shares a list

    def usage(self, body: Any) -> tuple[int, int]:
        """(prompt, completion) tokens: the scripted counts, else words in the request's messages and in this reply."""
        prompt = self.prompt_tokens if self.prompt_tokens is not None else _text_words(body)
        completion = self.completion_tokens
        if completion is None:
            completion = len(self.text.split()) + sum(len(json.dumps(c.arguments).split()) for c in self.tool_calls)
        return prompt, completion


@dataclass(frozen=True)
class Fault:
    """A failure; build one with the class methods. ``cut_stream`` and ``malformed_json`` corrupt ``reply`` (the
    server's ``default`` when None), so what arrives before the failure is realistic."""

    kind: Literal["status", "hang", "malformed_json", "truncated_body", "cut_stream"]
    code: int = 200
    message: str = ""
    retry_after: float | None = None
    after_chunks: int = 0
    reply: Reply | None = None

    @classmethod
    def status(cls, code: int, message: str | None = None) -> Fault:
        """An HTTP error carrying the provider's own error body (400, 401, 500, 503, Anthropic's 529...)."""
        return cls("status", code=code, message=message or f"fake provider error {code}")

    @classmethod
    def rate_limited(cls, retry_after: float = 1, message: str = "Rate limit reached (fake)") -> Fault:
        """A 429 with a ``Retry-After`` header (seconds), which routers use to time their next attempt."""
        return cls("status", code=429, message=message, retry_after=retry_after)

    @classmethod
    def hang(cls) -> Fault:
        """Accept the request and never answer; the connection is dropped when the server stops."""
        return cls("hang")

    @classmethod
    def malformed_json(cls, reply: Reply | None = None) -> Fault:
        """A 200 whose JSON body is cut short; when streaming, the middle event's JSON is cut short instead."""
        return cls("malformed_json", reply=reply)

    @classmethod
    def truncated_body(cls, reply: Reply | None = None) -> Fault:
        """A 200 with a plain JSON body cut short, even to a stream request (a proxy that ignores ``stream``)."""
        return cls("truncated_body", reply=reply)

    @classmethod
    def cut_stream(cls, after_chunks: int = 1, reply: Reply | None = None) -> Fault:
        """Send ``after_chunks`` valid SSE events, then abort the connection; the terminator (``[DONE]``,
        ``message_stop``, Gemini's ``finishReason`` chunk) is never sent. Non-streaming: half the body, then abort."""
        return cls("cut_stream", after_chunks=after_chunks, reply=reply)


Behaviour = Reply | Fault


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the provider saw it, to assert model names, translated messages and auth headers."""

    path: str
    query: dict[str, str]
    headers: dict[str, str]  # names lower-cased
    body: Any  # parsed JSON; None when the body was not JSON
    time: float  # time.monotonic() on arrival


def _text_words(node: Any, is_text: bool = False) -> int:
    """Words in message text (values of ``content``/``text``/``system`` keys), not in roles, types or schemas."""
    if isinstance(node, str):
        return len(node.split()) if is_text else 0
    if isinstance(node, dict):
        return sum(_text_words(v, k in ("content", "text", "system")) for k, v in node.items())
    if isinstance(node, list):
        return sum(_text_words(v, is_text) for v in node)
    return 0


def _text_pieces(text: str, words: int) -> list[str]:
    """``text`` in chunks of ``words`` words (leading spaces kept, as tokenizers do); they join back to ``text``."""
    tokens, step = re.findall(r"\s*\S+|\s+$", text), max(words, 1)
    return ["".join(tokens[i:i + step]) for i in range(0, len(tokens), step)]


def _json_pieces(value: dict[str, Any], size: int = 12) -> list[str]:
    """Tool arguments as JSON fragments, as providers stream them, so the client's accumulator is exercised."""
    raw = json.dumps(value)
    return [raw[i:i + size] for i in range(0, len(raw), size)]


class _Wire:
    """What the three wire formats share. Each subclass adds ``response`` (the JSON body), ``events`` (the whole SSE
    stream, whose last event is the terminator that ``cut_stream`` never sends) and ``error`` (the error body)."""

    route: str
    api_base_suffix: str
    eol = "\n"

    def __init__(self) -> None:
        self._ids = itertools.count(1)

    def new_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):06d}fake"

    @staticmethod
    def is_stream(request: web.Request, body: Any) -> bool:
        # Gemini streams by path (LiteLLM always adds alt=sse; without it real Gemini streams a JSON array instead).
        return request.match_info.get("action") == "streamGenerateContent" or (
            isinstance(body, dict) and body.get("stream") is True)

    def encode(self, event: SseEvent, truncate: bool = False) -> bytes:
        name, data = event
        payload = data if isinstance(data, str) else json.dumps(data)
        payload = payload[: len(payload) // 2] if truncate else payload
        head = f"event: {name}{self.eol}" if name else ""
        return f"{head}data: {payload}{self.eol}{self.eol}".encode()


class _OpenAI(_Wire):
    route = "/v1/chat/completions"
    api_base_suffix = "/v1"
    _ERRORS = {400: ("invalid_request_error", None), 401: ("invalid_request_error", "invalid_api_key"),
               404: ("invalid_request_error", "model_not_found"), 429: ("requests", "rate_limit_exceeded")}

    def _calls(self, reply: Reply) -> list[dict[str, Any]]:
        return [{"id": c.id or self.new_id("call_"), "type": "function",
                 "function": {"name": c.name, "arguments": json.dumps(c.arguments)}} for c in reply.tool_calls]

    def _head(self, obj: str, model: str) -> dict[str, Any]:
        return {"id": self.new_id("chatcmpl-"), "object": obj, "created": int(time.time()), "model": model,
                "system_fingerprint": "fp_fake"}

    @staticmethod
    def _usage(reply: Reply, body: Any) -> dict[str, int]:
        prompt, completion = reply.usage(body)
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    def response(self, reply: Reply, model: str, body: Any) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": reply.text or None, "refusal": None}
        if reply.tool_calls:
            message["tool_calls"] = self._calls(reply)
        choice = {"index": 0, "message": message, "logprobs": None,
                  "finish_reason": "tool_calls" if reply.tool_calls else "stop"}
        return {**self._head("chat.completion", model), "choices": [choice], "usage": self._usage(reply, body)}

    def events(self, reply: Reply, model: str, body: Any) -> list[SseEvent]:
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        head = {**self._head("chat.completion.chunk", model), **({"usage": None} if include_usage else {})}

        def chunk(delta: dict[str, Any], finish: str | None = None) -> SseEvent:
            return None, {**head, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}

        out = [chunk({"role": "assistant", "content": "", "refusal": None})]
        out += [chunk({"content": piece}) for piece in _text_pieces(reply.text, reply.chunk_words)]
        for index, (call, spec) in enumerate(zip(self._calls(reply), reply.tool_calls, strict=True)):
            out.append(chunk({"tool_calls": [{"index": index, **call, "function": {"name": spec.name,
                                                                                  "arguments": ""}}]}))
            out += [chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
                    for piece in _json_pieces(spec.arguments)]
        out.append(chunk({}, "tool_calls" if reply.tool_calls else "stop"))
        if include_usage:
            out.append((None, {**head, "choices": [], "usage": self._usage(reply, body)}))
        return [*out, (None, "[DONE]")]

    def error(self, code: int, message: str) -> dict[str, Any]:
        kind, err_code = self._ERRORS.get(code, ("server_error", None))
        return {"error": {"message": message, "type": kind, "param": None, "code": err_code}}


class _Anthropic(_Wire):
    route = "/v1/messages"
    api_base_suffix = ""
    _ERRORS = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error", 529: "overloaded_error"}

    def _blocks(self, reply: Reply) -> list[dict[str, Any]]:
        text: list[dict[str, Any]] = [{"type": "text", "text": reply.text}] if reply.text else []
        return text + [{"type": "tool_use", "id": c.id or self.new_id("toolu_"), "name": c.name, "input": c.arguments}
                       for c in reply.tool_calls]

    def _message(self, model: str, content: list[dict[str, Any]], stop: str | None, usage: dict[str, int]) -> dict:
        return {"id": self.new_id("msg_"), "type": "message", "role": "assistant", "model": model, "content": content,
                "stop_reason": stop, "stop_sequence": None, "usage": usage}

    def response(self, reply: Reply, model: str, body: Any) -> dict[str, Any]:
        prompt, completion = reply.usage(body)
        return self._message(model, self._blocks(reply), "tool_use" if reply.tool_calls else "end_turn",
                             {"input_tokens": prompt, "output_tokens": completion})

    def events(self, reply: Reply, model: str, body: Any) -> list[SseEvent]:
        prompt, completion = reply.usage(body)
        start = self._message(model, [], None, {"input_tokens": prompt, "output_tokens": 1})
        out: list[SseEvent] = [("message_start", {"type": "message_start", "message": start}),
                               ("ping", {"type": "ping"})]
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
        delta = {"stop_reason": "tool_use" if reply.tool_calls else "end_turn", "stop_sequence": None}
        out.append(("message_delta", {"type": "message_delta", "delta": delta, "usage": {"output_tokens": completion}}))
        return [*out, ("message_stop", {"type": "message_stop"})]

    def error(self, code: int, message: str) -> dict[str, Any]:
        return {"type": "error", "error": {"type": self._ERRORS.get(code, "api_error"), "message": message}}


class _Gemini(_Wire):
    route = r"/v1beta/models/{model:[^/:]+}:{action:generateContent|streamGenerateContent}"
    api_base_suffix = "/v1beta"
    eol = "\r\n"  # Google frames its SSE with CRLF
    _STATUSES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                 429: "RESOURCE_EXHAUSTED", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}

    def _chunk(self, parts: list[dict[str, Any]], model: str, response_id: str, last: bool, reply: Reply,
               body: Any) -> dict[str, Any]:
        candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
        out: dict[str, Any] = {"candidates": [candidate], "modelVersion": model, "responseId": response_id}
        if last:
            prompt, completion = reply.usage(body)
            candidate["finishReason"] = "STOP"  # Gemini says STOP after function calls too
            out["usageMetadata"] = {"promptTokenCount": prompt, "candidatesTokenCount": completion,
                                    "totalTokenCount": prompt + completion}
        return out

    def _parts(self, reply: Reply, words: int | None) -> list[dict[str, Any]]:
        texts = [reply.text] if words is None else _text_pieces(reply.text, words)
        return [{"text": t} for t in texts if t] + [{"functionCall": {"name": c.name, "args": c.arguments}}
                                                    for c in reply.tool_calls]

    def response(self, reply: Reply, model: str, body: Any) -> dict[str, Any]:
        return self._chunk(self._parts(reply, None), model, self.new_id("resp-"), True, reply, body)

    def events(self, reply: Reply, model: str, body: Any) -> list[SseEvent]:
        response_id, parts = self.new_id("resp-"), self._parts(reply, reply.chunk_words) or [{"text": ""}]
        return [(None, self._chunk([part], model, response_id, i == len(parts) - 1, reply, body))
                for i, part in enumerate(parts)]

    def error(self, code: int, message: str) -> dict[str, Any]:
        return {"error": {"code": code, "message": message, "status": self._STATUSES.get(code, "INTERNAL")}}


_WIRES: dict[Flavour, type[_OpenAI | _Anthropic | _Gemini]] = {
    "openai": _OpenAI, "anthropic": _Anthropic, "gemini": _Gemini}


class FakeProviderServer(LoopbackServer):
    """One fake provider on 127.0.0.1. Script it with :meth:`push`; read what it received in :attr:`requests`.

    Use it as a context manager, or call :meth:`start` and :meth:`stop`; :meth:`stop` also releases hung requests.
    """

    def __init__(self, flavour: Flavour, default: Behaviour | None = None) -> None:
        super().__init__()
        self.thread_name = f"fake-{flavour}"
        self.flavour: Flavour = flavour
        self.default: Behaviour = default or Reply("ok")
        self.requests: list[RecordedRequest] = []
        self._wire = _WIRES[flavour]()
        self._script: deque[Behaviour] = deque()

    @property
    def api_base(self) -> str:
        """What to pass as LiteLLM's ``api_base`` so that it requests the path the real provider serves."""
        return f"{self.url}{self._wire.api_base_suffix}"

    def push(self, *behaviours: Behaviour) -> None:
        """Queue behaviours; each request consumes the next one."""
        self._script.extend(behaviours)

    def routes(self, app: web.Application) -> None:
        app.router.add_post(self._wire.route, self._handle)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = None
        self.requests.append(RecordedRequest(request.path, dict(request.query),
                                             {k.lower(): v for k, v in request.headers.items()}, body,
                                             time.monotonic()))
        behaviour = self._script.popleft() if self._script else self.default
        wire, stream = self._wire, self._wire.is_stream(request, body)
        model = request.match_info.get("model") or (str(body.get("model", "")) if isinstance(body, dict) else "")
        if isinstance(behaviour, Fault) and behaviour.kind == "status":
            headers = {"Retry-After": f"{behaviour.retry_after:g}"} if behaviour.retry_after is not None else {}
            return web.json_response(wire.error(behaviour.code, behaviour.message), status=behaviour.code,
                                     headers=headers)
        if isinstance(behaviour, Fault) and behaviour.kind == "hang":
            assert self.stopping is not None
            await self.stopping.wait()
            return self._abort(request, web.StreamResponse())
        fault = behaviour.kind if isinstance(behaviour, Fault) else None
        fallback = self.default if isinstance(self.default, Reply) else Reply("ok")
        reply = behaviour if isinstance(behaviour, Reply) else behaviour.reply or fallback
        if stream and fault != "truncated_body":
            events = wire.events(reply, model, body)
            if isinstance(behaviour, Fault) and fault == "cut_stream":
                events = events[:-1][:behaviour.after_chunks]
            broken = (len(events) - 1) // 2 if fault == "malformed_json" else -1
            chunks = [wire.encode(event, i == broken) for i, event in enumerate(events)]
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        else:
            data = json.dumps(wire.response(reply, model, body)).encode()
            chunks = [data if fault is None else data[: len(data) // 2]]  # both faults send half the body
            response = web.StreamResponse(headers={"Content-Type": "application/json"})
            # A cut body announces its full length, so the client sees the connection drop mid-body.
            response.content_length = len(data) if fault == "cut_stream" else len(chunks[0])
        await asyncio.sleep(0 if stream else reply.delay)  # a JSON answer is sent whole, once it is complete
        await response.prepare(request)
        await asyncio.sleep(reply.delay if stream else 0)  # SSE headers come first: the delay is time to first token
        for i, chunk in enumerate(chunks):
            if i and reply.chunk_delay:
                await asyncio.sleep(reply.chunk_delay)
            await response.write(chunk)
        if fault == "cut_stream":
            return self._abort(request, response)
        await response.write_eof()
        return response

    @staticmethod
    def _abort(request: web.Request, response: web.StreamResponse) -> web.StreamResponse:
        """Drop the TCP connection mid-response, as a crashed upstream or a killed proxy does."""
        if request.transport is not None:
            request.transport.abort()
        return response
