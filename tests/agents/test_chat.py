"""The chat graph with scripted models behind the real LiteLLM Router: grounding, fallbacks, threads, no-model paths."""

from __future__ import annotations

import logging

import pytest

from mikey.agents.chat import build_chat_graph, open_checkpointer, run_turn, thread_history
from mikey.agents.grounding import UNVERIFIED
from mikey.agents.state import ChatContext
from mikey.market.replay import ReplayFeed
from mikey.router import fake
from mikey.router.chat_model import RouterChatModel
from mikey.router.groups import model_groups


def chat_with(settings, model, name: str = "writer"):
    """A chat context whose `local` group is the given fake; `offline` stays the real writer.

    The rule parser understands the message here (these tests script the analyze step; test_conversations.py
    covers the understand model)."""
    settings = settings.model_copy(update={"understand_with_model": False})
    groups = model_groups(settings)
    groups["local"] = fake.fake_group("local", name, model, family="local")
    context = ChatContext(settings=settings, feed=ReplayFeed(), chat_model=RouterChatModel(settings, groups),
                          group="local")
    return context


@pytest.fixture
def graph(settings):
    with open_checkpointer(settings) as checkpointer:
        yield build_chat_graph(checkpointer)


def test_grounded_draft_is_kept_and_attributed(settings, graph) -> None:
    model = fake.ScriptedModel(["SOL closed at 21.78 USD, up 5.95% on the day, with RSI(14) at 47.86."])
    answer = run_turn(graph, chat_with(settings, model), "How is SOL doing?", "t")
    assert answer.text == "SOL closed at 21.78 USD, up 5.95% on the day, with RSI(14) at 47.86."
    assert (answer.group, answer.model) == ("local", "mikey-fake/writer")
    assert (answer.grounding.checked, answer.grounding.matched, answer.grounding.removed) == (4, 4, [])
    assert answer.facts.symbol == "SOL" and str(answer.facts.quote.price) == "21.780764"


def test_prompt_carries_question_and_facts(settings, graph) -> None:
    model = fake.ScriptedModel(["SOL is calm."])
    run_turn(graph, chat_with(settings, model), "How is SOL doing?", "t")
    system, user = model.calls[0]
    assert system["role"] == "system" and "never add a number" in system["content"]
    assert "Question: How is SOL doing?" in user["content"]
    assert "price: 21.780764" in user["content"] and "rsi_14: 47.86" in user["content"]


def test_invented_numbers_are_removed(settings, graph) -> None:
    model = fake.ScriptedModel(["SOL is at 21.78 with RSI(14) at 47.86 and will hit 35 soon."])
    answer = run_turn(graph, chat_with(settings, model), "How is SOL doing?", "t")
    assert answer.text == f"SOL is at 21.78 with RSI(14) at 47.86 and will hit {UNVERIFIED} soon."
    assert answer.grounding.removed == ["35"]
    assert answer.group == "local"


def test_mostly_invented_draft_is_replaced_by_offline_writer(settings, graph) -> None:
    model = fake.ScriptedModel(["SOL rose 12% to 30.5 USD after 3 upgrades."])
    answer = run_turn(graph, chat_with(settings, model), "How is SOL doing?", "t")
    assert answer.group == "offline"
    assert answer.text.startswith("SOL last closed at 21.780764 USD on 2023-08-29")
    assert answer.grounding.removed == [] and answer.grounding.score == 1.0
    assert "stated 3 of 3 numbers that match no fact" in answer.notice


def test_failing_model_falls_back_to_offline_with_notice(settings, graph) -> None:
    settings = settings.model_copy(update={"num_retries": 0})
    model = fake.ScriptedModel([ConnectionError("model server went away")])
    answer = run_turn(graph, chat_with(settings, model), "How is SOL doing?", "t")
    assert answer.group == "offline"
    # The notice names the failing group and the error class, never the provider's own text (issue 11).
    assert answer.notice == "The local model did not answer (APIConnectionError, HTTP 500); offline wrote this instead."
    assert "21.780764" in answer.text


def test_greeting_and_unknown_market_need_no_model(settings, graph) -> None:
    model = fake.ScriptedModel([])  # any call would fail the test: the script is empty
    context = chat_with(settings, model)
    hello = run_turn(graph, context, "hi there", "t")
    assert hello.group == "rules" and "Ask me about BTC, ETH, SOL" in hello.text
    doge = run_turn(graph, context, "How is DOGE doing?", "t")
    assert doge.text == "I don't cover DOGE. Markets I cover: BTC, ETH, SOL."
    assert doge.facts is None
    assert model.calls == []


def test_thread_follow_ups_use_history(settings, graph) -> None:
    model = fake.FunctionModel(lambda messages, tools: "Steady.")
    context = chat_with(settings, model)
    assert run_turn(graph, context, "How is SOL doing?", "t1").facts.symbol == "SOL"
    assert run_turn(graph, context, "and its RSI?", "t1").facts.symbol == "SOL"
    assert run_turn(graph, context, "and ETH?", "t1").facts.symbol == "ETH"
    assert run_turn(graph, context, "and its RSI?", "other-thread").facts is None  # threads do not mix
    history = thread_history(graph, "t1")
    assert [t["role"] for t in history] == ["user", "assistant"] * 3
    assert history[4]["content"] == "and ETH?" and history[5]["symbols"] == ["ETH"]


def test_facts_from_previous_turn_do_not_leak(settings, graph) -> None:
    context = chat_with(settings, fake.ScriptedModel(["Steady."]))
    run_turn(graph, context, "How is SOL doing?", "t")
    assert run_turn(graph, context, "hello", "t").facts is None


def test_trade_request_never_trades(settings, graph) -> None:
    context = chat_with(settings, fake.ScriptedModel(["SOL is steady."]))
    answer = run_turn(graph, context, "open a 5x long on SOL with 300 USDC", "t")
    assert "Nothing executes until you approve the proposal" in answer.notice
    proposal = answer.proposal
    assert proposal.status == "awaiting_approval"
    assert (proposal.market, proposal.side, proposal.leverage, proposal.collateral) == ("SOL", "long", 5.0, 300.0)
    assert proposal.size == pytest.approx(300 * 5 / 21.780764)
    assert proposal.risk.liquidation_price is not None and proposal.risk.liquidation_price < 21.780764


def test_checkpoint_round_trip_is_clean(settings, graph, caplog) -> None:
    """Domain models in the state survive the checkpoint without LangGraph's unregistered-type warnings."""
    context = chat_with(settings, fake.ScriptedModel(["Steady.", "Steady."]))
    with caplog.at_level(logging.WARNING):
        run_turn(graph, context, "How is SOL doing?", "t")
        run_turn(graph, context, "and ETH?", "t")
        state = graph.get_state({"configurable": {"thread_id": "t"}}).values
    assert state["answer"].facts.symbol == "ETH"
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_ledger_rows_of_a_turn_name_each_prompt_and_version(settings, graph, ledger) -> None:
    """Every model call of a chat turn is recorded with the versioned prompt it was rendered from."""
    from mikey.agents.prompts import load_prompt

    def model(messages, tools) -> str:
        if messages[0]["content"].startswith("You classify messages"):
            return '{"kind": "analysis", "markets": ["SOL"]}'
        return "SOL closed at 21.78 USD with RSI(14) at 47.86."

    settings = settings.model_copy(update={"roles": {**settings.roles, "understand": ["local"]}})
    groups = model_groups(settings)
    groups["local"] = fake.fake_group("local", "prompted", fake.FunctionModel(model), family="local")
    context = ChatContext(settings=settings, feed=ReplayFeed(), chat_model=RouterChatModel(settings, groups, ledger),
                          group="local")

    answer = run_turn(graph, context, "How is SOL doing?", "t")

    assert answer.group == "local" and answer.intent.parsed_by == "local+rules"
    assert [(r.role, r.model_group, r.prompt) for r in ledger.calls()] == [
        ("understand", "local", load_prompt("chat/understand").ref),
        ("analyze", "local", load_prompt("chat/analyze").ref),
    ]
    assert load_prompt("chat/analyze").ref == "chat.analyze@2"
