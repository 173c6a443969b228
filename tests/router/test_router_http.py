"""The router against fake OpenAI, Anthropic and Gemini servers on 127.0.0.1 speaking the real wire formats.

LiteLLM's real HTTP path runs (``api_base`` points at the fakes); faults are scripted per request. Each test asserts
the outcome a user sees: which group answered, how many attempts each server saw, cooldowns, ledger rows, clear errors,
and that nothing hangs past its timeout. The chain in these tests is gpt-4 -> claude -> gemini -> offline (the local
model is made unusable so the chain is the same on every machine).
"""

from __future__ import annotations

import socket
import time
from typing import Literal

import pytest
from pydantic import BaseModel

from mikey.domain import Facts
from mikey.errors import ProviderUnavailable
from mikey.market.replay import ReplayFeed
from mikey.router.chat_model import DoneEvent, ErrorEvent, RouterChatModel, TokenEvent
from mikey.router.consensus import consensus
from mikey.router.offline import facts_block
from tests.fakes.provider_server import FakeProviderServer, Fault, Reply, ToolCall

MESSAGES = [{"role": "user", "content": "How is SOL doing?"}]
GROUP_OF = {"openai": "gpt-4", "anthropic": "claude", "gemini": "gemini"}


@pytest.fixture
def servers():
    started = {flavour: FakeProviderServer(flavour).start() for flavour in GROUP_OF}
    yield started
    for server in started.values():
        server.stop()


def make_settings(settings, servers, **overrides):
    """The test's settings pointed at the fake servers (validated again, so keys become secrets)."""
    return type(settings)(**{
        **settings.model_dump(),
        "openai_api_key": "sk-test", "openai_api_base": servers["openai"].api_base,
        "anthropic_api_key": "ant-test", "anthropic_api_base": servers["anthropic"].api_base,
        "gemini_api_key": "gem-test", "gemini_api_base": servers["gemini"].api_base,
        "local_model_path": settings.home / "no-local-model.gguf",
        "num_retries": 0, "rate_limit_retries": 1, "request_timeout": 5.0, **overrides,
    })


def wait_for(probe, seconds: float = 3.0):
    """LiteLLM reports failed attempts from a background thread; give the ledger row a moment to land."""
    deadline = time.monotonic() + seconds
    while not (found := probe()) and time.monotonic() < deadline:
        time.sleep(0.02)
    return found


def calls_to(server: FakeProviderServer) -> int:
    return len(server.requests)


@pytest.mark.parametrize("flavour", ["openai", "anthropic", "gemini"])
def test_each_wire_format_answers_with_usage_and_cost(settings, servers, ledger, flavour) -> None:
    servers[flavour].push(Reply("SOL is steady today.", prompt_tokens=11, completion_tokens=5))
    cm = RouterChatModel(make_settings(settings, servers), ledger=ledger)
    done = cm.complete(MESSAGES, role="analyze", group=GROUP_OF[flavour], only=True, thread_id="th")
    assert (done.text, done.group, done.prompt_tokens, done.completion_tokens) == (
        "SOL is steady today.", GROUP_OF[flavour], 11, 5)
    import litellm

    info = litellm.get_model_info(cm.groups[GROUP_OF[flavour]].deployments[0].model)
    expected = 11 * info["input_cost_per_token"] + 5 * info["output_cost_per_token"]
    assert done.cost_usd == pytest.approx(expected) and expected > 0
    [row] = ledger.calls()
    assert (row.model_group, row.outcome, row.tokens_in, row.tokens_out, row.thread_id) == (
        GROUP_OF[flavour], "ok", 11, 5, "th")
    assert row.cost_usd == pytest.approx(expected)


def test_price_override_per_deployment(settings, servers, ledger) -> None:
    s = make_settings(settings, servers, openai_api_key=None, deployments=[
        {"group": "gpt-4", "model": "openai/gpt-4o", "api_base": servers["openai"].api_base,
         "api_key_env": "MIKEY_TEST_KEY", "input_cost_per_token": 0.5, "output_cost_per_token": 1.0}])
    import os

    os.environ["MIKEY_TEST_KEY"] = "sk-x"
    try:
        servers["openai"].push(Reply("ok", prompt_tokens=3, completion_tokens=2))
        done = RouterChatModel(s, ledger=ledger).complete(MESSAGES, role="analyze", group="gpt-4", only=True)
    finally:
        del os.environ["MIKEY_TEST_KEY"]
    assert done.cost_usd == pytest.approx(3 * 0.5 + 2 * 1.0)
    assert done.deployment == "gpt-4#1"


def test_server_error_is_retried_then_answered(settings, servers) -> None:
    servers["openai"].push(Fault.status(500), Reply("second time lucky"))
    cm = RouterChatModel(make_settings(settings, servers, num_retries=1))
    done = cm.complete(MESSAGES, role="analyze")
    assert (done.text, done.group, calls_to(servers["openai"]), calls_to(servers["anthropic"])) == (
        "second time lucky", "gpt-4", 2, 0)


def test_rate_limit_waits_for_retry_after(settings, servers) -> None:
    servers["openai"].push(Fault.rate_limited(retry_after=1), Reply("after the wait"))
    cm = RouterChatModel(make_settings(settings, servers))
    done = cm.complete(MESSAGES, role="analyze")
    first, second = servers["openai"].requests
    assert done.text == "after the wait" and done.group == "gpt-4"
    assert second.time - first.time >= 0.95  # the Retry-After of 1 s was honoured


def test_auth_error_is_not_retried_falls_back_and_cools_down(settings, servers, ledger) -> None:
    servers["openai"].push(Fault.status(401))
    servers["anthropic"].push(Reply("from claude"), Reply("claude again"))
    cm = RouterChatModel(make_settings(settings, servers, num_retries=2), ledger=ledger)
    done = cm.complete(MESSAGES, role="analyze", thread_id="th")
    assert (done.text, done.group, done.fallbacks) == ("from claude", "claude", 1)
    assert calls_to(servers["openai"]) == 1  # no retry on an auth error
    failures = wait_for(lambda: [r for r in ledger.calls() if r.outcome == "error"])
    assert failures and failures[0].model_group == "gpt-4" and "AuthenticationError" in failures[0].error
    assert "gpt-4#0" in cm.cooldowns()
    again = cm.complete(MESSAGES, role="analyze")
    assert again.group == "claude" and calls_to(servers["openai"]) == 1  # the dead deployment is skipped


def test_connection_refused_falls_back_fast(settings, servers) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}/v1"
    servers["anthropic"].push(Reply("claude answers"))
    cm = RouterChatModel(make_settings(settings, servers, openai_api_base=dead))
    started = time.perf_counter()
    done = cm.complete(MESSAGES, role="analyze")
    assert done.group == "claude" and time.perf_counter() - started < 3


def test_hanging_server_times_out_and_falls_back(settings, servers) -> None:
    servers["openai"].push(Fault.hang())
    servers["anthropic"].push(Reply("claude in time"))
    cm = RouterChatModel(make_settings(settings, servers, request_timeout=1.0))
    started = time.perf_counter()
    done = cm.complete(MESSAGES, role="analyze")
    elapsed = time.perf_counter() - started
    assert done.group == "claude" and done.text == "claude in time"
    assert 0.9 <= elapsed < 1.0 + 1.5, elapsed


def test_malformed_json_falls_back(settings, servers) -> None:
    servers["openai"].push(Fault.malformed_json())
    servers["anthropic"].push(Reply("clean JSON here"))
    done = RouterChatModel(make_settings(settings, servers)).complete(MESSAGES, role="analyze")
    assert done.group == "claude"


def test_everything_down_ends_with_the_offline_writer(settings, servers) -> None:
    for flavour in servers:
        servers[flavour].default = Fault.status(503)
    facts = Facts(symbol="SOL", quote=ReplayFeed().quote("SOL"))
    done = RouterChatModel(make_settings(settings, servers)).complete(
        [{"role": "user", "content": facts_block(facts)}], role="analyze")
    assert done.group == "offline" and done.requested_group == "gpt-4"
    assert done.text.startswith("SOL last closed at 21.780764 USD")


def test_everything_down_without_offline_is_a_clear_error(settings, servers) -> None:
    for flavour in servers:
        servers[flavour].default = Fault.status(500)
    s = make_settings(settings, servers, roles={"default": ["gpt-4", "claude", "gemini"]})
    with pytest.raises(ProviderUnavailable, match=r"no model in the chain gpt-4 -> claude -> gemini answered"):
        RouterChatModel(s).complete(MESSAGES, role="analyze")


@pytest.mark.parametrize("flavour", ["openai", "anthropic", "gemini"])
def test_stream_delivers_tokens_then_done(settings, servers, flavour) -> None:
    servers[flavour].push(Reply("one two three four"))
    cm = RouterChatModel(make_settings(settings, servers))
    events = list(cm.stream(MESSAGES, role="chat", group=GROUP_OF[flavour]))
    assert "".join(e.text for e in events if isinstance(e, TokenEvent)).strip() == "one two three four"
    assert isinstance(events[-1], DoneEvent) and events[-1].completion.group == GROUP_OF[flavour]


def test_stream_cut_midway_ends_with_an_error_event(settings, servers) -> None:
    servers["openai"].push(Fault.cut_stream(after_chunks=3, reply=Reply("alpha beta gamma delta epsilon zeta")))
    events = list(RouterChatModel(make_settings(settings, servers)).stream(MESSAGES, role="chat"))
    tokens = [e for e in events if isinstance(e, TokenEvent)]
    assert tokens and isinstance(events[-1], ErrorEvent)
    assert events[-1].group == "gpt-4" and "gpt-4 stream" in events[-1].message
    assert not any(isinstance(e, DoneEvent) for e in events)


def test_stream_falls_back_before_the_first_token(settings, servers) -> None:
    servers["openai"].push(Fault.status(500))
    servers["anthropic"].push(Reply("claude streams instead"))
    events = list(RouterChatModel(make_settings(settings, servers)).stream(MESSAGES, role="chat"))
    assert isinstance(events[-1], DoneEvent) and events[-1].completion.group == "claude"
    assert events[-1].completion.text == "claude streams instead"


class Verdict(BaseModel):
    trend: Literal["up", "down", "flat"]
    confidence: float


def test_wrong_schema_reply_is_repaired(settings, servers) -> None:
    servers["openai"].push(Reply('{"trend": "sideways", "confidence": 2}'),
                           Reply('{"trend": "flat", "confidence": 0.4}'))
    value, done = RouterChatModel(make_settings(settings, servers)).structured(MESSAGES, Verdict, role="analyze")
    assert value == Verdict(trend="flat", confidence=0.4) and done.group == "gpt-4"
    repair = servers["openai"].requests[1].body["messages"][-1]["content"]
    assert "trend" in repair and "does not match" in repair


@pytest.mark.parametrize("flavour", ["openai", "anthropic", "gemini"])
def test_tool_calls_are_normalised(settings, servers, flavour) -> None:
    servers[flavour].push(Reply(tool_calls=[ToolCall("get_quote", {"symbol": "SOL", "fresh": True})]))
    tools = [{"type": "function", "function": {"name": "get_quote", "description": "latest price",
                                               "parameters": {"type": "object", "properties": {
                                                   "symbol": {"type": "string"}, "fresh": {"type": "boolean"}}}}}]
    done = RouterChatModel(make_settings(settings, servers)).complete(
        MESSAGES, role="chat", group=GROUP_OF[flavour], only=True, tools=tools)
    [call] = done.tool_calls
    assert (call.name, call.arguments) == ("get_quote", {"symbol": "SOL", "fresh": True})
    assert call.id


def test_consensus_across_three_providers(settings, servers) -> None:
    servers["openai"].push(Reply('{"trend": "up", "confidence": 0.6}'))
    servers["anthropic"].push(Reply('{"trend": "up", "confidence": 0.62}'))
    servers["gemini"].push(Reply('{"trend": "up", "confidence": 0.61}'))
    result = consensus(RouterChatModel(make_settings(settings, servers)), MESSAGES, Verdict,
                       groups=["gpt-4", "claude", "gemini"], role="analyze")
    assert str(result.agreement["trend"]) == "3 of 3 models agree on trend"
    assert result.value == Verdict(trend="up", confidence=0.61)
