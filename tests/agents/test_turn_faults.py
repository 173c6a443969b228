"""A chat turn always ends with an answer, whatever its provider does, and a provider's raw text stays inside.

The real chat graph and LiteLLM's real HTTP path against a fake OpenAI server on 127.0.0.1 (the real wire format):
a hang, a stream answered with a truncated JSON body, a budget that refuses the provider, a 401 whose body carries
the key that was sent. The local model is made unusable so the chain is gpt-4 -> offline on every machine.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from mikey.agents.chat import Reset, build_chat_graph, open_checkpointer, run_turn, stream_turn
from mikey.agents.state import ChatContext
from mikey.market.replay import ReplayFeed
from mikey.router.chat_model import RouterChatModel
from tests.fakes.provider_server import FakeProviderServer, Fault, Reply

KEY = "sk-live-THIS-KEY-MUST-NEVER-LEAK-4242"
QUESTION = "How is SOL doing?"


@pytest.fixture
def openai():
    server = FakeProviderServer("openai", default=Reply("SOL last closed at 21.780764 USD.")).start()
    yield server
    server.stop()


def hosted(settings, server: FakeProviderServer, **overrides):
    """Settings whose gpt-4 group is the fake server (and no local model), validated again so the key is secret."""
    return type(settings)(**{
        **settings.model_dump(), "openai_api_key": KEY, "openai_api_base": server.api_base,
        "local_model_path": settings.home / "no-local-model.gguf", "num_retries": 0, "understand_with_model": False,
        **overrides,
    })


@pytest.fixture
def graph(settings):
    with open_checkpointer(settings) as checkpointer:
        yield build_chat_graph(checkpointer)


def context(settings, ledger=None) -> ChatContext:
    return ChatContext(settings=settings, feed=ReplayFeed(), chat_model=RouterChatModel(settings, ledger=ledger),
                       group="gpt-4")


def streamed(graph, ctx, thread="t"):
    pieces = list(stream_turn(graph, ctx, QUESTION, thread))
    return pieces[:-1], pieces[-1]


@pytest.mark.parametrize("stream", [False, True])
def test_hanging_provider_ends_by_the_turn_deadline_with_the_facts(settings, openai, graph, stream) -> None:
    config = hosted(settings, openai, turn_deadline_seconds=2.0, request_timeout=60.0, first_token_timeout=60.0)
    ctx = context(config)
    run_turn(graph, ctx, QUESTION, "warm-up")  # imports and first loads are not what this test times
    openai.default = Fault.hang()
    started = time.monotonic()
    answer = streamed(graph, ctx)[1] if stream else run_turn(graph, ctx, QUESTION, "t")
    took = time.monotonic() - started
    assert took < 2.0 + 3.0, f"the turn took {took:.1f} s"
    assert answer.group == "offline" and "21.780764" in answer.text and answer.facts.quote is not None
    assert "deadline" in answer.notice and "offline writer" in answer.notice


def test_a_hosted_understand_model_is_not_waited_on_by_an_offline_turn(settings, openai, graph) -> None:
    """The understand role lists gpt-4, which hangs; a turn asked of the offline group never asks it."""
    openai.default = Fault.hang()
    config = hosted(settings, openai, understand_with_model=True, roles={**settings.roles, "understand": ["gpt-4"]})
    ctx = ChatContext(settings=config, feed=ReplayFeed(), chat_model=RouterChatModel(config), group="offline")
    run_turn(graph, ctx, QUESTION, "warm-up")
    started = time.monotonic()
    answer = run_turn(graph, ctx, QUESTION, "t")
    assert time.monotonic() - started < 2.0
    assert answer.group == "offline" and answer.intent.parsed_by == "rules" and not openai.requests


def test_stream_answered_with_a_truncated_json_body_falls_back(settings, openai, graph) -> None:
    openai.push(Fault.truncated_body())
    shown, answer = streamed(graph, context(hosted(settings, openai)))
    assert answer.group == "offline" and answer.text.startswith("SOL last closed at 21.780764 USD")
    assert "".join(p for p in shown if isinstance(p, str)).strip() == answer.text
    assert "gpt-4" in answer.notice and len(openai.requests) == 1


def test_stream_cut_mid_answer_is_withdrawn_and_the_offline_writer_answers(settings, openai, graph) -> None:
    openai.push(Fault.cut_stream(after_chunks=12, reply=Reply(
        "SOL last closed at 21.780764 USD. The market is calm today. Traders are waiting for news. More soon.")))
    shown, answer = streamed(graph, context(hosted(settings, openai)))
    resets = [i for i, p in enumerate(shown) if isinstance(p, Reset)]
    assert len(resets) == 1 and shown[:resets[0]], "something was shown, then withdrawn"
    after = "".join(p for p in shown[resets[0] + 1:] if isinstance(p, str))
    assert after.strip() == answer.text and answer.group == "offline"
    assert "stopped mid-answer" in answer.notice


@pytest.mark.parametrize("stream", [False, True])
def test_a_budget_that_refuses_the_provider_falls_back_and_says_why(settings, openai, graph, ledger, stream) -> None:
    config = hosted(settings, openai, budget_per_thread_usd=0.0001)
    ctx = context(config, ledger)
    answer = streamed(graph, ctx)[1] if stream else run_turn(graph, ctx, QUESTION, "t")
    assert answer.group == "offline" and answer.text and not openai.requests
    assert "gpt-4 was not asked: the thread t budget of $0.0001 would be exceeded" in answer.notice


def _files_under(home: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(home.rglob("*")) if p.is_file())


@pytest.mark.parametrize("stream", [False, True])
def test_a_provider_error_body_carrying_the_key_never_leaves_the_router(settings, openai, graph, ledger, stream,
                                                                          caplog, capfd) -> None:
    openai.default = Fault.status(401, f"Incorrect API key provided: {KEY}. Find your key at platform.example.")
    ctx = context(hosted(settings, openai), ledger)
    answer = streamed(graph, ctx)[1] if stream else run_turn(graph, ctx, QUESTION, "t")
    assert openai.requests and answer.group == "offline"
    assert "The gpt-4 model did not answer (AuthenticationError, HTTP 401); offline wrote this instead." \
        in answer.notice
    everything = [answer.model_dump_json(), caplog.text, *capfd.readouterr()]
    assert not [text for text in everything if KEY in text]
    ledger.close()
    assert KEY.encode() not in _files_under(settings.home)
