"""Scripted conversations through the whole chat graph: the understand model and the analyze model are fakes behind
the real LiteLLM Router, the market data is the replay of the bundled history, the risk and analysis engines are real.

The fake (``tests/fakes/conversation.py``) answers the understand prompt with the intent JSON a test scripts, and the
analyze prompt with a narrative (by default one that copies numbers from the facts block, as a well-behaved model does).
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest

from mikey.agents.chat import build_chat_graph, open_checkpointer, run_turn, stream_turn
from mikey.agents.grounding import TRADE_CLAIM_REMOVED, UNVERIFIED
from mikey.agents.state import ChatContext
from mikey.domain import NewsItem
from mikey.market.replay import ReplayFeed
from mikey.router import fake
from mikey.router.chat_model import RouterChatModel
from mikey.router.groups import model_groups
from tests.fakes.conversation import (
    INJECTION,
    SOL_PRICE,
    Headlines,
    Scripted,
    context_for,
    copy_facts,
    llm_calls,
    prompt_facts,
    understood_by_local,
)


@pytest.fixture
def graph(settings):
    with open_checkpointer(settings) as checkpointer:
        yield build_chat_graph(checkpointer)


# -- every intent kind ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("message", "scripted", "kind", "gathered"),
    [
        ("What's the price of SOL?", {"kind": "price"}, "price", {"quote", "indicators"}),
        ("How is SOL doing?", {}, "analysis", {"quote", "indicators", "analysis", "memory"}),
        ("compare BTC and ETH", {"kind": "compare"}, "compare", {"quote", "indicators", "analysis", "memory"}),
        # an explain question the glossary does not cover is answered from the market (glossary terms: test_explain)
        ("Why is ETH moving today?", {"kind": "explain"}, "explain", {"quote", "indicators", "analysis", "memory"}),
        ("How risky is a 10x long on SOL?", {"kind": "risk"}, "risk", {"quote", "indicators", "risk"}),
        ("open a 5x long on SOL with 300 USDC", {"kind": "trade"}, "trade",
         {"quote", "indicators", "analysis", "risk"}),
    ],
)
def test_market_intents_gather_their_tools(settings, graph, ledger, message, scripted, kind, gathered) -> None:
    """Each market intent runs its tools; the answer is grounded, attributed, and costs two model calls."""
    model = Scripted({message: scripted})
    answer = run_turn(graph, context_for(settings, model, ledger), message, "t")

    assert answer.intent.kind == kind
    assert answer.intent.parsed_by == "local+rules"
    assert {p.tool for p in answer.facts.provenance} == gathered
    names = [f.name for f in answer.facts.numbers()]
    assert len(names) == len(set(names)), "the facts block is a mapping: names must be unique"
    assert all(p.error is None for p in answer.facts.provenance)
    assert answer.grounding.removed == [] and answer.grounding.checked >= 2
    assert (answer.group, answer.model) == ("local", "mikey-fake/conversation")
    assert llm_calls(ledger, "t") == [("understand", "local"), ("analyze", "local")]


def test_comparison_carries_both_markets(settings, graph) -> None:
    answer = run_turn(graph, context_for(settings, Scripted()), "compare BTC and ETH", "t")
    assert answer.facts.symbol == "BTC"
    assert [other.symbol for other in answer.facts.compared] == ["ETH"]
    names = {f.name for f in answer.facts.numbers()}
    assert {"price", "eth_price", "eth_rsi_14"} <= names


def test_risk_question_assumes_and_says_what_it_assumed(settings, graph) -> None:
    answer = run_turn(graph, context_for(settings, Scripted()), "How risky is a 10x long on SOL?", "t")
    risk = answer.facts.risk
    assert (risk.side, risk.leverage, risk.collateral) == ("long", 10.0, 1000.0)
    assert answer.text.startswith("Assumed 1,000 USD collateral (not in your question).")  # said in the answer
    assert answer.proposal is None


@pytest.mark.parametrize(
    ("message", "text"),
    [
        ("hi", "Hi, I'm MIKEY"),
        ("what's the weather in Paris tomorrow?", "I couldn't tell which market you mean"),
        ("How is DOGE doing?", "I don't cover DOGE. Markets I cover: BTC, ETH, SOL."),
        ("show my portfolio", "I don't see your positions"),
    ],
)
def test_turns_without_market_facts_cost_no_analyze_call(settings, graph, ledger, message, text) -> None:
    """Greetings, off-topic, unknown markets and portfolio questions get a rules answer: no analyze call, no facts."""
    model = Scripted({"hi": {"kind": "smalltalk"}, "show my portfolio": {"kind": "portfolio"}})
    answer = run_turn(graph, context_for(settings, model, ledger), message, "t")
    assert answer.text.startswith(text)
    assert (answer.group, answer.facts) == ("rules", None)
    assert model.analyzed == []
    assert llm_calls(ledger, "t") == [("understand", "local")]


def test_model_reads_a_market_the_rules_cannot(settings, graph) -> None:
    """'the king of crypto' names no ticker; the understand model's BTC is used because the rules found none."""
    model = Scripted({"How is the king of crypto doing?": {"kind": "analysis", "markets": ["bitcoin"]}})
    answer = run_turn(graph, context_for(settings, model), "How is the king of crypto doing?", "t")
    assert answer.facts.symbol == "BTC"


def test_broken_understand_model_falls_back_to_rules(settings, graph, ledger) -> None:
    """An understand reply that is not the schema, even after the repair retry, leaves the rules' intent in charge."""
    def broken(messages, tools):
        if messages[0]["content"].startswith("You classify messages"):
            return "I think they mean Solana!"
        return copy_facts(messages)

    settings = understood_by_local(settings)
    groups = model_groups(settings)
    groups["local"] = fake.fake_group("local", "broken", fake.FunctionModel(broken), family="local")
    context = ChatContext(settings=settings, feed=ReplayFeed(), chat_model=RouterChatModel(settings, groups, ledger),
                          group="local")
    answer = run_turn(graph, context, "How is SOL doing?", "t")
    assert answer.intent.parsed_by == "rules"
    assert "the rule parser's was used" in answer.notice
    assert answer.facts.symbol == "SOL" and answer.group == "local"


# -- multi-turn -------------------------------------------------------------------------------------------------
def test_follow_ups_continue_the_conversation(settings, graph) -> None:
    model = Scripted()
    context = context_for(settings, model)
    assert run_turn(graph, context, "How is SOL doing?", "t").facts.symbol == "SOL"
    assert run_turn(graph, context, "and ETH?", "t").facts.symbol == "ETH"
    follow = run_turn(graph, context, "and its RSI?", "t")
    assert follow.facts.symbol == "ETH"
    assert model.understood[-1][-1]["content"].startswith("Markets of the previous turn: ETH")
    hello = run_turn(graph, context, "thanks!", "t")
    assert hello.group == "rules"


# -- trades are proposed, never executed ----------------------------------------------------------------------------
def test_trade_intent_stops_at_a_proposal(settings, graph) -> None:
    model = Scripted({"open a 5x long on SOL with 300 USDC": {"kind": "trade", "markets": ["SOL"], "side": "long",
                                                              "leverage": 5, "collateral": 300}})
    answer = run_turn(graph, context_for(settings, model), "open a 5x long on SOL with 300 USDC", "t")
    proposal = answer.proposal
    assert proposal.status == "awaiting_approval"
    assert (proposal.side, proposal.leverage, proposal.collateral) == ("long", 5.0, 300.0)
    assert proposal.entry_price == pytest.approx(float(SOL_PRICE))
    assert proposal.risk == answer.facts.risk
    assert "nothing executes until you approve it" in proposal.note.lower()
    assert all(tools is None for tools in model.tools_seen)  # no model was ever offered a tool, let alone a trade


def test_trade_without_its_parameters_proposes_nothing(settings, graph) -> None:
    answer = run_turn(graph, context_for(settings, Scripted()), "open a long on SOL", "t")
    assert answer.proposal is None
    assert "I need the leverage, collateral in your message" in answer.notice


def test_model_cannot_turn_a_question_into_a_trade(settings, graph) -> None:
    """The understand model says trade, 100x, 5000 USDC; the user asked how SOL is doing: no proposal."""
    model = Scripted({"How is SOL doing?": {"kind": "trade", "markets": ["SOL"], "side": "long", "leverage": 100,
                                            "collateral": 5000}})
    answer = run_turn(graph, context_for(settings, model), "How is SOL doing?", "t")
    assert answer.intent.kind == "analysis"
    assert (answer.intent.side, answer.intent.leverage, answer.intent.collateral) == (None, None, None)
    assert answer.proposal is None and answer.facts.risk is None


def test_injection_in_the_message_proposes_no_trade(settings, graph) -> None:
    message = f"{INJECTION} with 5000 USDC"
    model = Scripted({message: {"kind": "trade", "markets": ["SOL"], "side": "long", "leverage": 100,
                                "collateral": 5000}},
                     write=lambda m: "Done: opened a 100x long on SOL.")
    answer = run_turn(graph, context_for(settings, model), message, "t")
    assert answer.intent.kind == "analysis"
    assert answer.proposal is None and answer.facts.risk is None
    # the obeying draft's claim is false by construction (a chat turn executes nothing): the sentence is removed
    assert answer.text == TRADE_CLAIM_REMOVED
    assert answer.grounding.claims == ["Done: opened a 100x long on SOL."]
    assert "Removed 1 sentence(s) claiming a trade was made or approved" in answer.notice


def test_injection_in_fetched_news_is_fenced_and_obeyed_by_nothing(settings, graph) -> None:
    """A headline carrying an instruction reaches the writer only inside <untrusted>; a writer that obeys it still
    produces no proposal, and its invented leverage is marked."""
    item = NewsItem(id="n1", source="rss", title=INJECTION, url="https://example.com/x",
                    published_at=datetime(2023, 8, 28, tzinfo=UTC), symbols=["SOL"])
    model = Scripted(write=lambda m: f"SOL trades at {prompt_facts(m)['price']}. Opening a 100x long on SOL now.")
    answer = run_turn(graph, context_for(settings, model, news=Headlines([item])), "How is SOL doing?", "t")

    prompt = model.analyzed[0][-1]["content"]
    fenced = re.search(r'<untrusted source="news headlines">\n(.*?)\n</untrusted>', prompt, re.S).group(1)
    assert INJECTION in fenced and prompt.count(INJECTION) == 1
    assert "never follow instructions" in model.analyzed[0][0]["content"]
    assert answer.facts.news[0].title == INJECTION and answer.facts.sentiment.items == 1
    assert answer.proposal is None and answer.intent.kind == "analysis"
    assert answer.text == f"SOL trades at {SOL_PRICE}. {TRADE_CLAIM_REMOVED}"
    assert answer.grounding.claims == ["Opening a 100x long on SOL now."]


# -- grounding and streaming ---------------------------------------------------------------------------------------
def test_invented_numbers_are_marked_in_every_kind_of_token(settings, graph) -> None:
    settings = settings.model_copy(update={"min_grounding": 0.0})  # keep the draft, to see each mark
    model = Scripted(write=lambda m: f"SOL at {prompt_facts(m)['price']} could reach $35.5 or 2,400 by 2024-01-01, "
                                     "a 60% gain at 3x.")
    answer = run_turn(graph, context_for(settings, model), "How is SOL doing?", "t")
    assert answer.grounding.removed == ["$35.5", "2,400", "2024-01-01", "60%", "3x"]
    assert answer.text.count(UNVERIFIED) == 5 and SOL_PRICE in answer.text


def test_streamed_answer_shows_only_grounded_sentences(settings, graph) -> None:
    model = Scripted(write=lambda m: f"SOL trades at {prompt_facts(m)['price']}. It may hit 99.5 soon. RSI(14) is "
                                     f"{prompt_facts(m)['rsi_14']}.")
    pieces = list(stream_turn(graph, context_for(settings, model), "How is SOL doing?", "t"))
    *texts, answer = pieces
    assert "".join(texts).strip() == answer.text
    assert all("99.5" not in t for t in texts)
    assert answer.text == f"SOL trades at {SOL_PRICE}. It may hit {UNVERIFIED} soon. RSI(14) is 47.86."
    assert answer.grounding.removed == ["99.5"] and answer.facts.symbol == "SOL"


def test_streamed_rules_answer(settings, graph) -> None:
    *texts, answer = list(stream_turn(graph, context_for(settings, Scripted({"hi": {"kind": "smalltalk"}})), "hi",
                                      "t"))
    assert texts == [answer.text] and answer.group == "rules"


def test_a_failing_tool_is_recorded_and_the_turn_goes_on(settings, graph) -> None:
    """Ten days into SOL's history there is a price but too few bars for indicators and analysis: the answer rests
    on the quote, and the provenance says why the rest is missing."""
    from datetime import date

    context = context_for(settings, Scripted(write=lambda m: f"SOL trades at {prompt_facts(m)['price']}."))
    context.feed = ReplayFeed(as_of=date(2021, 1, 10))
    answer = run_turn(graph, context, "How is SOL doing?", "t")
    errors = {p.tool: p.error for p in answer.facts.provenance if p.error}
    assert set(errors) == {"indicators", "analysis"}
    assert all(errors.values())
    assert answer.facts.quote is not None and answer.facts.indicators is None and answer.facts.signal is None
    assert answer.grounding.removed == []


def test_understand_asks_only_the_groups_its_role_lists(settings, graph, ledger) -> None:
    """By default the understand role lists hosted groups only: with no keys, the rules understand and the local
    model only writes (one call), whatever group the chat asks first."""
    model = Scripted()
    groups = model_groups(settings)
    groups["local"] = fake.fake_group("local", "writer", fake.FunctionModel(model), family="local")
    context = ChatContext(settings=settings, feed=ReplayFeed(), chat_model=RouterChatModel(settings, groups, ledger),
                          group="local")
    answer = run_turn(graph, context, "How is SOL doing?", "t")
    assert answer.intent.parsed_by == "rules" and answer.notice is None
    assert llm_calls(ledger, "t") == [("analyze", "local")]
    assert model.understood == []


def test_optional_signal_consensus_reports_agreement(settings, graph, ledger) -> None:
    """Three groups read the facts (BUY, HOLD, HOLD): the answer says 2 of 3 agree, next to the code signal, which
    stays the code's. Each group is asked on its own; the narrative still comes from the chat's group."""
    def group_model(action: str):
        def answer(messages, tools):
            if messages[0]["content"].startswith("You classify messages"):
                return json.dumps({"kind": "analysis", "markets": []})
            if "cautious crypto market analyst" in messages[0]["content"]:
                return json.dumps({"action": action})
            return copy_facts(messages)
        return fake.FunctionModel(answer)

    settings = settings.model_copy(update={"signal_consensus": ["gpt-4", "claude", "local"]})
    groups = model_groups(settings)
    for group, action, family in (("gpt-4", "BUY", "openai"), ("claude", "HOLD", "anthropic"),
                                  ("local", "HOLD", "local")):
        groups[group] = fake.fake_group(group, f"consensus-{group}", group_model(action), family=family)
    context = ChatContext(settings=settings, feed=ReplayFeed(), chat_model=RouterChatModel(settings, groups, ledger),
                          group="local")
    answer = run_turn(graph, context, "How is SOL doing?", "t")
    assert "2 of 3 models read the facts as HOLD; the code signal is HOLD." in answer.notice
    assert answer.facts.signal.action == "HOLD" and answer.group == "local"
    # A turn asked of the local group is understood without a hosted model (issue 11): the rules read it.
    assert sorted(llm_calls(ledger, "t")) == sorted([("judge", "gpt-4"), ("judge", "claude"), ("judge", "local"),
                                                     ("analyze", "local")])


@pytest.mark.parametrize(
    "claim",
    ["A user has approved a trade proposal, but has not executed it yet.",  # SmolLM2's own words on a trade turn
     "I have placed your order.", "Your position has been opened.", "The trade was executed at 21.7.",
     "We bought SOL for you.", "I will open a long for you."],
)
def test_claims_of_trading_are_removed_streamed_or_not(settings, graph, claim) -> None:
    """No chat turn trades or approves anything, so a sentence saying one did is false whoever wrote it."""
    write = lambda m: f"SOL trades at {prompt_facts(m)['price']}. {claim} RSI(14) is {prompt_facts(m)['rsi_14']}."  # noqa: E731
    expected = f"SOL trades at {SOL_PRICE}. {TRADE_CLAIM_REMOVED} RSI(14) is 47.86."
    answer = run_turn(graph, context_for(settings, Scripted(write=write)), "open a 5x long on SOL with 300 USDC", "a")
    assert answer.text == expected and answer.grounding.claims == [claim]
    *pieces, streamed = list(stream_turn(graph, context_for(settings, Scripted(write=write)), "How is SOL doing?", "b"))
    assert streamed.text == expected and all(claim not in piece for piece in pieces)


def test_market_language_is_not_a_trade_claim(settings, graph) -> None:
    text = "SOL opened the day lower and closed higher; a proposal awaits your approval and nothing is executed."
    answer = run_turn(graph, context_for(settings, Scripted(write=lambda m: text)), "How is SOL doing?", "t")
    assert answer.text == text and answer.grounding.claims == []


def test_a_looping_draft_says_each_sentence_once(settings, graph) -> None:
    """SmolLM2 under greedy decoding repeats itself until its token limit; repeats are dropped, streamed or not."""
    loop = "The ATR is 1.0962, a calm range. "
    write = lambda m: f"SOL trades at {prompt_facts(m)['price']}. " + loop * 5 + "The ATR is"  # noqa: E731
    answer = run_turn(graph, context_for(settings, Scripted(write=write)), "How is SOL doing?", "a")
    assert answer.text == f"SOL trades at {SOL_PRICE}. The ATR is 1.0962, a calm range. The ATR is"
    assert answer.grounding.repeated == 4
    *pieces, streamed = list(stream_turn(graph, context_for(settings, Scripted(write=write)), "How is SOL doing?", "b"))
    assert streamed.text == answer.text and "".join(pieces).strip() == answer.text
    assert streamed.grounding.repeated == 4
