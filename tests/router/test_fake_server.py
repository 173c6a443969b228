"""The fake provider servers, proven with the real LiteLLM over HTTP.

Each test drives ``litellm.completion`` (or ``acompletion``) at a :class:`FakeProviderServer` through ``api_base``,
so what is asserted is what the product's router will see from a real provider: the text and usage, streamed
chunks, tool calls normalised to OpenAI's shape, and the exception class each fault becomes. Where LiteLLM treats
the three providers differently, the test says so per flavour; those differences are the reason this fake exists.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
import warnings
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no fetch of the cost map at import
import litellm  # noqa: E402
from litellm.exceptions import MidStreamFallbackError  # noqa: E402
from litellm.litellm_core_utils.exception_mapping_utils import _get_response_headers  # noqa: E402
from litellm.llms.custom_httpx.async_client_cleanup import close_litellm_async_clients  # noqa: E402

from tests.conftest import close_litellm_clients  # noqa: E402
from tests.fakes.provider_server import FakeProviderServer, Fault, Reply, ToolCall  # noqa: E402

litellm.suppress_debug_info = True

FLAVOURS = ("openai", "anthropic", "gemini")
MODEL = {"openai": "openai/gpt-4o", "anthropic": "anthropic/claude-sonnet-4-5", "gemini": "gemini/gemini-2.5-pro"}
MESSAGES = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "How is SOL doing?"}]
PROMPT_WORDS = 7  # the default prompt_tokens: words of message text, whatever envelope the provider wraps it in
TOOLS = [{"type": "function", "function": {
    "name": "get_quote", "description": "Latest price of a market.",
    "parameters": {"type": "object", "properties": {"symbol": {"type": "string"}}, "required": ["symbol"]}}}]
QUOTE_CALL = ToolCall("get_quote", {"symbol": "SOL"})
HANG_TIMEOUT, HANG_MARGIN = 1.0, 1.0


def run_async(make: Any) -> Any:
    """Run ``make()`` in ``asyncio.run``, closing the async clients LiteLLM cached on that loop before it ends."""

    async def main() -> Any:
        try:
            return await make()
        finally:
            await close_litellm_async_clients()

    return asyncio.run(main())


@pytest.fixture(autouse=True)
def main_thread_loop() -> Iterator[None]:
    """Own the main thread's event loop during each test, and close it after.

    LiteLLM's sync OpenAI path calls ``asyncio.get_event_loop()``, which on Python 3.11 quietly creates a loop for the
    main thread; LiteLLM's Router (on a cooldown) and ``asyncio.run`` later replace that loop without closing it, and
    the collector reports it, as a ResourceWarning, in whichever test is running then.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            loop = asyncio.get_event_loop_policy().get_event_loop()
        except RuntimeError:  # the current loop was set to None
            loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    yield
    asyncio.set_event_loop(None)
    loop.close()


@pytest.fixture(params=FLAVOURS)
def server(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeProviderServer]:
    # A Router built with cache_responses sets LiteLLM's process-wide response cache; every call here must go to
    # the server.
    monkeypatch.setattr(litellm, "cache", None)
    fake = FakeProviderServer(request.param).start()
    try:
        yield fake
    finally:
        close_litellm_clients(litellm)
        fake.stop()


def complete(server: FakeProviderServer, **kwargs: Any) -> Any:
    return litellm.completion(model=MODEL[server.flavour], api_base=server.api_base, api_key="test",
                              messages=MESSAGES, num_retries=0, **kwargs)


def stream_chunks(server: FakeProviderServer, **kwargs: Any) -> list[Any]:
    return list(complete(server, stream=True, **kwargs))


def content_of(chunks: list[Any]) -> list[str]:
    return [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]


def failure(server: FakeProviderServer, fault: Fault, **kwargs: Any) -> Exception:
    server.push(fault)
    with pytest.raises(Exception) as caught:
        complete(server, **kwargs)
    return caught.value


# --- answers --------------------------------------------------------------------------------------------------------


def test_reply_text_usage_and_finish_reason(server: FakeProviderServer) -> None:
    server.push(Reply("SOL is up 3% today.", prompt_tokens=12, completion_tokens=6), Reply("one two three"))
    first, second = complete(server), complete(server)
    assert first.choices[0].message.content == "SOL is up 3% today."
    assert first.choices[0].message.role == "assistant"
    assert first.choices[0].finish_reason == "stop"
    assert (first.usage.prompt_tokens, first.usage.completion_tokens, first.usage.total_tokens) == (12, 6, 18)
    assert (second.usage.prompt_tokens, second.usage.completion_tokens) == (PROMPT_WORDS, 3)  # word-count defaults


def test_default_answers_when_the_script_is_empty(server: FakeProviderServer) -> None:
    server.default = Reply("steady as she goes")
    assert [complete(server).choices[0].message.content for _ in range(2)] == ["steady as she goes"] * 2


def test_stream_arrives_in_scripted_chunks_with_usage(server: FakeProviderServer) -> None:
    server.push(Reply("alpha beta gamma delta epsilon", chunk_words=2, prompt_tokens=5, completion_tokens=4))
    chunks = stream_chunks(server, stream_options={"include_usage": True})
    assert content_of(chunks) == ["alpha beta", " gamma delta", " epsilon"]
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    usage = chunks[-1].usage
    assert (usage.prompt_tokens, usage.completion_tokens) == (5, 4)
    assert litellm.stream_chunk_builder(chunks, messages=MESSAGES).choices[0].message.content == (
        "alpha beta gamma delta epsilon")


def test_tool_calls_come_back_in_openai_shape(server: FakeProviderServer) -> None:
    server.push(Reply(tool_calls=[QUOTE_CALL]))
    choice = complete(server, tools=TOOLS).choices[0]
    (call,) = choice.message.tool_calls
    assert (call.type, call.function.name, json.loads(call.function.arguments)) == ("function", "get_quote",
                                                                                    {"symbol": "SOL"})
    assert call.id and choice.finish_reason == "tool_calls"
    sent_tools = server.requests[0].body["tools"]
    declared = {"openai": lambda: sent_tools[0]["function"]["name"], "anthropic": lambda: sent_tools[0]["name"],
                "gemini": lambda: sent_tools[0]["function_declarations"][0]["name"]}[server.flavour]()
    assert declared == "get_quote"


def test_streamed_tool_calls_assemble(server: FakeProviderServer) -> None:
    server.push(Reply(tool_calls=[QUOTE_CALL, ToolCall("get_quote", {"symbol": "BTC", "fresh": True})]))
    chunks = stream_chunks(server, tools=TOOLS)
    message = litellm.stream_chunk_builder(chunks, messages=MESSAGES).choices[0].message
    assert [(c.function.name, json.loads(c.function.arguments)) for c in message.tool_calls] == [
        ("get_quote", {"symbol": "SOL"}), ("get_quote", {"symbol": "BTC", "fresh": True})]
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_acompletion_and_async_stream(server: FakeProviderServer) -> None:
    server.push(Reply("async answer"), Reply("async stream answer"))

    async def both() -> tuple[str, list[str]]:
        kwargs = {"model": MODEL[server.flavour], "api_base": server.api_base, "api_key": "test",
                  "messages": MESSAGES, "num_retries": 0}
        answer = await litellm.acompletion(**kwargs)
        stream = await litellm.acompletion(stream=True, **kwargs)
        return answer.choices[0].message.content, content_of([chunk async for chunk in stream])

    assert run_async(both) == ("async answer", ["async", " stream", " answer"])


def test_delay_comes_before_the_answer_or_the_first_token(server: FakeProviderServer) -> None:
    server.push(Reply("slow answer", delay=0.3), Reply("slow start", delay=0.3))
    started = time.monotonic()
    assert complete(server).choices[0].message.content == "slow answer"
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    stream = complete(server, stream=True)
    first = next(c for c in stream if c.choices and c.choices[0].delta.content)
    assert time.monotonic() - started >= 0.3
    assert first.choices[0].delta.content == "slow" and content_of(list(stream)) == [" start"]


# --- what each provider received ------------------------------------------------------------------------------------


def test_requests_record_path_model_messages_and_auth(server: FakeProviderServer) -> None:
    complete(server)
    stream_chunks(server)
    plain, streamed = server.requests
    body = plain.body
    if server.flavour == "openai":
        assert plain.path == streamed.path == "/v1/chat/completions"
        assert plain.headers["authorization"] == "Bearer test"
        assert (body["model"], body["messages"]) == ("gpt-4o", MESSAGES)
        assert streamed.body["stream"] is True
    elif server.flavour == "anthropic":
        assert plain.path == streamed.path == "/v1/messages"
        assert plain.headers["x-api-key"] == "test" and "authorization" not in plain.headers
        assert plain.headers["anthropic-version"]
        assert body["model"] == "claude-sonnet-4-5" and body["max_tokens"] > 0
        assert body["system"] == [{"type": "text", "text": "You are terse."}]  # the system message moves out
        assert body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "How is SOL doing?"}]}]
        assert streamed.body["stream"] is True
    else:
        assert plain.path == "/v1beta/models/gemini-2.5-pro:generateContent"
        assert streamed.path == "/v1beta/models/gemini-2.5-pro:streamGenerateContent"
        assert (plain.query, streamed.query) == ({}, {"alt": "sse"})  # the key is never in the URL
        assert plain.headers["x-goog-api-key"] == "test"
        assert body["system_instruction"] == {"parts": [{"text": "You are terse."}]}
        assert body["contents"] == [{"role": "user", "parts": [{"text": "How is SOL doing?"}]}]
    assert streamed.time >= plain.time


# --- faults ---------------------------------------------------------------------------------------------------------


def test_server_error_is_internal_server_error_and_a_router_retries_it(server: FakeProviderServer) -> None:
    error = failure(server, Fault.status(500, "upstream exploded"))
    assert type(error) is litellm.InternalServerError and error.status_code == 500
    assert "upstream exploded" in str(error)
    server.push(Fault.status(500), Reply("second attempt"))
    router = litellm.Router(model_list=[{"model_name": "g", "litellm_params": {
        "model": MODEL[server.flavour], "api_base": server.api_base, "api_key": "test"}}], num_retries=1)
    assert router.completion(model="g", messages=MESSAGES).choices[0].message.content == "second attempt"
    assert len(server.requests) == 3


def test_rate_limit_is_rate_limit_error_with_retry_after_visible_to_the_router(server: FakeProviderServer) -> None:
    error = failure(server, Fault.rate_limited(retry_after=7))
    assert type(error) is litellm.RateLimitError and error.status_code == 429
    # The header the Router reads (OpenAI's exception carries it on .response; the others on
    # .litellm_response_headers only, their .response being a synthetic one without headers).
    assert _get_response_headers(error)["retry-after"] == "7"
    assert litellm.utils._get_retry_after_from_exception_header(_get_response_headers(error)) == 7


def test_unauthorised_is_authentication_error_and_not_retried(server: FakeProviderServer) -> None:
    error = failure(server, Fault.status(401))
    assert type(error) is litellm.AuthenticationError and error.status_code == 401
    server.push(Fault.status(401), Reply("never asked for"))
    router = litellm.Router(model_list=[{"model_name": "g", "litellm_params": {
        "model": MODEL[server.flavour], "api_base": server.api_base, "api_key": "test"}}], num_retries=2)
    with pytest.raises(litellm.AuthenticationError):
        router.completion(model="g", messages=MESSAGES)
    assert len(server.requests) == 2


# A 200 whose JSON is cut short, and a body cut off mid-way, become a different class per provider. Gemini's
# malformed body is a BadRequestError (422), which routers do not retry; the others are retried as 500s.
BROKEN_BODY = {
    "openai": {"malformed": (litellm.InternalServerError, 500), "cut": (litellm.InternalServerError, 500)},
    "anthropic": {"malformed": (litellm.APIConnectionError, 500), "cut": (litellm.InternalServerError, 500)},
    "gemini": {"malformed": (litellm.BadRequestError, 422), "cut": (litellm.APIConnectionError, 500)},
}


def test_malformed_and_cut_json_bodies_are_api_errors(server: FakeProviderServer) -> None:
    for name, fault in (("malformed", Fault.malformed_json()), ("cut", Fault.cut_stream())):
        error = failure(server, fault)
        assert isinstance(error, openai.APIError)  # the root of every LiteLLM provider exception
        assert (type(error), error.status_code) == BROKEN_BODY[server.flavour][name], name


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_hang_becomes_timeout_within_the_timeout(server: FakeProviderServer, stream: bool) -> None:
    server.push(Fault.hang())
    started = time.monotonic()
    with pytest.raises(litellm.Timeout):
        response = complete(server, timeout=HANG_TIMEOUT, stream=stream)
        # Gemini's stream opens lazily: completion() returns at once and the Timeout comes from the first read.
        assert stream and server.flavour == "gemini" and time.monotonic() - started < HANG_TIMEOUT
        next(iter(response))
    assert HANG_TIMEOUT <= time.monotonic() - started < HANG_TIMEOUT + HANG_MARGIN


def test_cut_stream_raises_mid_stream_after_the_chunks_sent(server: FakeProviderServer) -> None:
    server.push(Fault.cut_stream(after_chunks=3, reply=Reply("one two three four five six")))
    received: list[Any] = []
    with pytest.raises(MidStreamFallbackError) as caught:
        for chunk in complete(server, stream=True):
            received.append(chunk)
    # Three SSE events carry 2 words (OpenAI: role chunk first), 0 (Anthropic: message_start, ping, block start)
    # or 3 words (Gemini: one per event); nothing after the cut.
    expected = {"openai": "one two", "anthropic": "", "gemini": "one two three"}[server.flavour]
    assert "".join(content_of(received)) == expected == caught.value.generated_content
    # A ServiceUnavailableError subclass, but its status_code is the wrapped APIConnectionError's 500.
    assert isinstance(caught.value, litellm.ServiceUnavailableError) and caught.value.status_code == 500
    assert isinstance(caught.value.original_exception, litellm.APIConnectionError)


def test_corrupt_stream_event(server: FakeProviderServer) -> None:
    """The middle SSE event's JSON is cut short (the fourth word for OpenAI, the third for the others).

    OpenAI raises at the corrupt event. Anthropic and Gemini both lose it and every event after it (their SSE
    decoders keep appending lines to the broken JSON); Anthropic then raises for want of a finish reason, but
    Gemini ends the stream with a normal ``stop``: a silently truncated answer the product must catch itself.
    """
    server.push(Fault.malformed_json(reply=Reply("one two three four five six")))
    received: list[Any] = []
    if server.flavour == "gemini":
        received = stream_chunks(server)
        assert content_of(received) == ["one", " two"]
        assert [c.choices[0].finish_reason for c in received if c.choices[0].finish_reason] == ["stop"]
        return
    with pytest.raises(MidStreamFallbackError) as caught:
        for chunk in complete(server, stream=True):
            received.append(chunk)
    expected = {"openai": "one two three", "anthropic": "one two"}[server.flavour]
    assert "".join(content_of(received)) == expected == caught.value.generated_content


# --- the server itself ----------------------------------------------------------------------------------------------


ENDPOINT = {"openai": "/chat/completions", "anthropic": "/v1/messages",
            "gemini": "/models/gemini-2.5-pro:generateContent"}


@pytest.mark.parametrize(("code", "expected"), [
    (401, {"openai": {"error": {"message": "bad key", "type": "invalid_request_error", "param": None,
                                "code": "invalid_api_key"}},
           "anthropic": {"type": "error", "error": {"type": "authentication_error", "message": "bad key"}},
           "gemini": {"error": {"code": 401, "message": "bad key", "status": "UNAUTHENTICATED"}}}),
    (500, {"openai": {"error": {"message": "bad key", "type": "server_error", "param": None, "code": None}},
           "anthropic": {"type": "error", "error": {"type": "api_error", "message": "bad key"}},
           "gemini": {"error": {"code": 500, "message": "bad key", "status": "INTERNAL"}}}),
])
def test_error_bodies_use_each_providers_shape(server: FakeProviderServer, code: int, expected: dict) -> None:
    server.push(Fault.status(code, "bad key"), Fault.rate_limited(retry_after=2))
    with httpx.Client() as client:
        error = client.post(server.api_base + ENDPOINT[server.flavour], json={"model": "m"})
        limited = client.post(server.api_base + ENDPOINT[server.flavour], json={"model": "m"})
    assert (error.status_code, error.json()) == (code, expected[server.flavour])
    assert (limited.status_code, limited.headers["retry-after"]) == (429, "2")


def test_stop_releases_a_hung_request_promptly() -> None:
    outcome: list[BaseException | int] = []
    fake = FakeProviderServer("openai", default=Fault.hang()).start()

    def call() -> None:
        try:
            outcome.append(httpx.post(fake.api_base + "/chat/completions", json={}, timeout=30).status_code)
        except httpx.HTTPError as error:
            outcome.append(error)

    caller = threading.Thread(target=call)
    caller.start()
    while not fake.requests:
        time.sleep(0.01)
    started = time.monotonic()
    fake.stop()
    caller.join(timeout=5)
    assert time.monotonic() - started < 2 and not caller.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], httpx.RemoteProtocolError)
    fake.stop()  # idempotent


def test_api_base_needs_a_started_server() -> None:
    with pytest.raises(RuntimeError, match="not started"):
        _ = FakeProviderServer("gemini").api_base
