"""The chat graph, one turn: understand -> gather -> analyze -> respond -> remember -> approval.

Numbers come from ``gather`` (code); words come from ``analyze``: a model, through the router, whose every number is
checked against the facts (``writing.write_grounded``, the one way MIKEY writes a grounded answer, streamed or not).
Messages that need no market facts (greetings, stated preferences, unknown markets, portfolio questions) skip
straight to ``respond`` with a rules answer and cost no ``analyze`` call. An analysis turn makes at most two model
calls: ``understand`` and ``analyze`` (plus the offline writer, which is code, when a draft fails grounding; plus one
per group with the opt-in signal consensus).

A trade intent ends in a ``TradeProposal`` stored for its owner's approval; "close my eth position" becomes a close
proposal (``position``), and "how are my positions doing" reads the broker's ledger (``portfolio``). Nothing executes
but through the ``approval`` node (``mikey.agents.orders``): the thread pauses there with ``interrupt()``, and only the
owner's plain yes in the same thread, resumed by ``run_turn``/``stream_turn``, approves and executes the proposal
shown. No tool that executes is reachable from any other node. A checkpointer keeps the thread (SqliteSaver, or
PostgresSaver with ``checkpoint_url``), so the next turn sees the history ("and ETH?" after a question about SOL).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any, Literal

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import Command
from pydantic import BaseModel

from mikey import domain
from mikey.agents import dialogue, orders, understand
from mikey.agents.gather import gather
from mikey.agents.prompts import load_prompt
from mikey.agents.state import ChatContext, ChatState, Turn
from mikey.agents.writing import Reset, write_grounded
from mikey.domain import Answer, Facts, Intent
from mikey.errors import MikeyError
from mikey.execution.guard import decide, execution_request
from mikey.market import symbols
from mikey.router.offline import facts_block
from mikey.settings import Settings
from mikey.tools import market as market_tools

ANALYZE_PROMPT = "chat/analyze"
SIGNAL_VIEW_PROMPT = "chat/signal_view"
RULES = "rules"  # the writer of answers that need no model
NO_FACTS_KINDS = frozenset({"smalltalk", "unknown", "portfolio"})
_MARKET_TALK = re.compile(r"\b(up|market|markets|crypto|coins?|prices?|doing|going|outlook|update|summary|moving|"
                          r"happening|news)\b", re.I)
"""Words of a market question that names no market ("what's up?", "how are markets?"): favourites answer it."""
MAX_HEADLINES = 5
OWN_GROUPS = frozenset({"local", "offline"})
"""Groups that run on this machine: a turn asked of one of them asks no hosted model to understand it either."""


def _thread(config: RunnableConfig) -> str:
    return config["configurable"]["thread_id"]


def understand_node(state: ChatState, config: RunnableConfig, runtime: Runtime[ChatContext]) -> dict[str, Any]:
    """The intent (model parse checked by rules); remembered preferences fill in what the message leaves open."""
    ctx = runtime.context
    previous = next((t["symbols"] for t in reversed(state.get("history") or []) if t.get("symbols")), None)
    groups = understand.understand_groups(ctx.chat_model, ctx.settings) if ctx.settings.understand_with_model else []
    if ctx.group in OWN_GROUPS:
        groups = [g for g in groups if g in OWN_GROUPS]
    intent, why = understand.understand(state["message"], previous, ctx.chat_model, groups=groups,
                                        thread_id=_thread(config), deadline=ctx.deadline)
    preferences = _preferences(ctx)
    favourites = [s for s in preferences.get("favourite_markets", "").split(",") if s]
    if (intent.kind == "unknown" and not intent.symbols and not intent.unknown_symbols and favourites
            and _MARKET_TALK.search(state["message"])):
        intent = intent.model_copy(update={"symbols": favourites[:3],
                                           "kind": "compare" if len(favourites) > 1 else "analysis"})
        why = " ".join(filter(None, [why, f"No market named; your favourite markets: {', '.join(favourites)}."]))
    intent, carried = dialogue.follow_up(intent, state["message"], state.get("dialogue"))
    why = " ".join(filter(None, [why, carried])) or None
    draft = getattr(intent, "clarify", None)
    awaiting = state.get("awaiting")
    if decide(state["message"]) is not None:  # a bare "yes" or "no" that resumed nothing: say why, guess nothing
        intent = Intent(kind="smalltalk")
        draft = "No trade proposal is waiting for your answer in this conversation."
        if awaiting and awaiting.get("user_id") != ctx.user:
            draft = f"Proposal {awaiting['id']} in this conversation is not yours: only its owner can answer it."
            if ctx.executor is not None:
                ctx.executor.log_refusal(awaiting["id"], "only the proposal's owner can answer it",
                                         actor=f"user:{ctx.user}", text=state["message"])
    if ctx.executor is not None and execution_request(state["message"]):
        ctx.executor.log_refusal(_thread(config), "an instruction-shaped message is not an order or an approval",
                                 actor=f"user:{ctx.user}", text=state["message"])
    return {"intent": intent, "preferences": preferences, "facts": None, "proposal": None, "draft": draft,
            "writer_group": None, "writer_model": None, "notice": why, "grounding": None, "answer": None,
            "approval": None, "assumed": None, "comparison": None}


def _preferences(ctx: ChatContext) -> dict[str, str]:
    if ctx.memory is None:
        return {}
    try:
        return ctx.memory.preferences(ctx.user)
    except MikeyError:
        return {}


def _after_understand(state: ChatState) -> str:
    intent = state["intent"]
    if state.get("draft"):  # already answered by understand: a clarifying question, a bare yes/no
        return "respond"
    if intent.kind == "explain":
        return "explain"
    if intent.kind == "alert":
        return "alert"
    if intent.kind == "trade" and intent.order in ("close", "reduce"):
        return "position"
    if intent.kind == "portfolio":
        return "portfolio"
    return "gather" if intent.symbols and intent.kind not in NO_FACTS_KINDS else "respond"


def gather_node(state: ChatState, config: RunnableConfig, runtime: Runtime[ChatContext]) -> dict[str, Any]:
    """Run the tools the intent needs, in parallel, into one ``Facts``; a trade intent's proposal is stored for the
    user's approval."""
    ctx, intent = runtime.context, state["intent"]
    prefs = state.get("preferences") or {}
    got = gather(ctx, intent, state["message"], prefs)
    notes = [state.get("notice"), _scope_notice(intent), *got.notes]
    orders.screen_untrusted(ctx, got.facts, _thread(config))
    update: dict[str, Any] = {"facts": got.facts, "proposal": got.proposal, "assumed": got.assumed,
                              "comparison": got.comparison, "notice": " ".join(n for n in notes if n) or None}
    if got.proposal is not None and ctx.executor is not None:
        tolerance = intent.risk_tolerance or prefs.get("risk_tolerance")
        stored = orders.store_open(ctx, got.proposal, got.facts, _thread(config), tolerance)
        update.update(proposal=stored, awaiting={"id": stored.id, "digest": stored.digest or "",
                                                 "user_id": ctx.user})
    return update


def _scope_notice(intent: Intent) -> str | None:
    notes = []
    if intent.unknown_symbols:
        notes.append(f"I don't cover {', '.join(intent.unknown_symbols)} (markets: {', '.join(symbols.SUPPORTED)}).")
    if intent.kind == "alert":
        notes.append("Alerts cannot be set from chat yet; `mikey insights --every N` watches RSI extremes and risk "
                     "thresholds.")
    if intent.kind == "trade":
        notes.append("Nothing executes until you approve the proposal: reply yes to approve or no to reject.")
    return " ".join(notes) or None


def _context_block(state: ChatState) -> str:
    """Preferences, earlier notes and headlines: background for the words, fenced off from instructions."""
    facts: Facts = state["facts"]
    parts: list[str] = []
    prefs = state.get("preferences") or {}
    tolerance = state["intent"].risk_tolerance or prefs.get("risk_tolerance")
    if tolerance:
        parts.append(f"The user's risk tolerance: {tolerance}.")
    if state.get("proposal") is not None:
        parts.append("A trade proposal was prepared for the user's approval; it is not executed.")
    if facts.memories:
        notes = "\n".join(f"- {m.text}" for m in facts.memories)
        parts.append(f"<untrusted source=\"earlier notes, may be outdated\">\n{notes}\n</untrusted>")
    if facts.news:
        headlines = "\n".join(f"- {n.title}" for n in facts.news[:MAX_HEADLINES])
        parts.append(f"<untrusted source=\"news headlines\">\n{headlines}\n</untrusted>")
    return "\n".join(parts)


def _analyze_messages(state: ChatState) -> list[dict[str, str]]:
    return load_prompt(ANALYZE_PROMPT).render(question=state["message"], facts_block=facts_block(state["facts"]),
                                              context=_context_block(state))


class SignalView(BaseModel):
    """One model group's reading of the facts, for the optional signal consensus."""

    action: Literal["BUY", "SELL", "HOLD"]


def analyze_node(state: ChatState, config: RunnableConfig, runtime: Runtime[ChatContext]) -> dict[str, Any]:
    """The grounded words over the facts (``writing.write_grounded``): a model's draft with every number checked, or
    the offline writer's rendering when the draft fails the grounding bar or never arrives; streamed when the context
    asks, each sentence shown once it is vouched for."""
    ctx = runtime.context
    notice = _join(state.get("notice"), _signal_consensus(state, ctx, _thread(config)))
    show = None
    if ctx.stream:
        def show(piece: str | Reset) -> None:
            runtime.stream_writer({"reset": piece.reason} if isinstance(piece, Reset) else {"text": piece})
    written = write_grounded(ctx.chat_model, _analyze_messages(state), state["facts"],
                             min_grounding=ctx.settings.min_grounding, group=ctx.group, thread_id=_thread(config),
                             deadline=ctx.deadline, show=show)
    return {"draft": written.text, "grounding": written.grounding, "writer_group": written.group,
            "writer_model": written.model, "notice": _join(notice, *written.notes)}


def _signal_consensus(state: ChatState, ctx: ChatContext, thread_id: str) -> str | None:
    """With ``signal_consensus`` naming two or more usable groups: their majority reading next to the code signal.

    Opt-in (each group is one more model call); it reports agreement and never replaces the code signal.
    """
    from mikey.router.consensus import consensus

    facts = state["facts"]
    wanted = ctx.settings.signal_consensus
    if len(wanted) < 2 or facts.signal is None:
        return None
    usable = [g for g in wanted if g in ctx.chat_model.chain("analyze", offline=False)]
    if len(usable) < 2:
        return f"Signal consensus needs two usable groups of {', '.join(wanted)}; it was skipped."
    messages = load_prompt(SIGNAL_VIEW_PROMPT).render(facts_block=facts_block(facts))
    try:
        found = consensus(ctx.chat_model, messages, SignalView, groups=usable, role="judge", thread_id=thread_id)
    except MikeyError as exc:
        return f"Signal consensus failed: {exc}."
    agreed = found.agreement["action"]
    failed = f" ({', '.join(found.failures)} gave no valid reading)" if found.failures else ""
    return (f"{agreed.agree} of {agreed.total} models read the facts as {agreed.value}{failed}; "
            f"the code signal is {facts.signal.action}.")


def _join(*notes: str | None) -> str | None:
    return " ".join(n for n in notes if n) or None


def explain_node(state: ChatState, runtime: Runtime[ChatContext]) -> dict[str, Any]:
    """"What does RSI mean?": the glossary's definition and source (recalled by meaning from the vector store), with
    the named market's current value; a question the glossary does not cover goes on to the market answer."""
    from mikey.agents.glossary import explain, lookup

    ctx, intent = runtime.context, state["intent"]
    entry = lookup(state["message"], ctx.memory, market_named=bool(intent.symbols))
    if entry is None:
        return {}
    symbol = intent.symbols[0] if intent.symbols else None
    values = None
    if symbol and entry.fact:
        try:
            values = market_tools.get_indicators(ctx.feed, symbol)
        except MikeyError:
            values = None
    return {"draft": explain(entry, symbol, values)}


def _after_explain(state: ChatState) -> str:
    if state.get("draft"):
        return "respond"
    intent = state["intent"]
    return "gather" if intent.symbols else "respond"


def alert_node(state: ChatState, config: RunnableConfig, runtime: Runtime[ChatContext]) -> dict[str, Any]:
    """"Ping me if btc drops below 25k": an alert rule stored for the user, evaluated by `mikey insights --every`
    and the ingestion pipeline."""
    from mikey.alerts.chat import set_from_message

    ctx, intent = runtime.context, state["intent"]
    try:
        text = set_from_message(ctx.settings, ctx.feed, ctx.user, _thread(config), state["message"], intent.symbols)
    except MikeyError as exc:
        text = f"I could not set that alert: {exc}"
    return {"draft": text}


def respond_node(state: ChatState, runtime: Runtime[ChatContext]) -> dict[str, Any]:
    """Assemble the answer and add the turn to the thread's history."""
    intent = state["intent"]
    if state.get("facts") is None:
        text = state.get("draft") or _rules_text(intent, state.get("preferences") or {})
        if runtime.context.stream:
            runtime.stream_writer({"text": text})
        answer = Answer(text=text, group=RULES, model=RULES, intent=intent, notice=state.get("notice"),
                        proposal=state.get("proposal"))
    else:
        text = state["draft"] or ""
        if state.get("assumed"):  # said in the answer itself, not only in the notice
            text = f"Assumed {state['assumed']} (not in your question).\n{text}"
        if state.get("comparison"):
            text = f"{text}\n{state['comparison']}"
            if runtime.context.stream:
                runtime.stream_writer({"text": f"\n{state['comparison']}"})
        answer = Answer(text=text, facts=state["facts"], group=state["writer_group"],
                        model=state["writer_model"], grounding=state["grounding"], notice=state.get("notice"),
                        intent=intent, proposal=state.get("proposal"))
    turns: list[Turn] = [
        {"role": "user", "content": state["message"], "symbols": intent.symbols, "group": None, "kind": intent.kind},
        {"role": "assistant", "content": answer.text, "symbols": intent.symbols, "group": answer.group,
         "kind": intent.kind},
    ]
    return {"answer": answer, "history": turns, "dialogue": dialogue.remember(intent, state.get("dialogue"))}


def _rules_text(intent: Intent, preferences: dict[str, str]) -> str:
    markets = ", ".join(symbols.SUPPORTED)
    if intent.unknown_symbols:
        return f"I don't cover {', '.join(intent.unknown_symbols)}. Markets I cover: {markets}."
    noted = []
    if intent.risk_tolerance:
        noted.append(f"your risk tolerance is {intent.risk_tolerance}")
    if intent.favourite_markets:
        noted.append(f"you follow {', '.join(intent.favourite_markets)}")
    if noted:
        return f"Noted: {' and '.join(noted)}. I'll keep that in mind for risk checks and market summaries."
    if intent.kind == "portfolio":
        return ("I don't see your positions: MIKEY holds no account data. Ask about a position instead, for example: "
                "How risky is a 5x long on SOL with 300 USDC?")
    if intent.kind == "smalltalk":
        return ("Hi, I'm MIKEY, a market-analysis assistant for Solana perpetuals. I give prices and a technical "
                "analysis computed by code, assess the risk of a position (liquidation price, VaR), explain terms "
                "like RSI or funding, compare markets, set price and indicator alerts, and propose trades that "
                f"execute only when you approve them (paper trading by default). Ask me about {markets}, for "
                "example: How is SOL doing?")
    return f"I couldn't tell which market you mean. Markets I cover: {markets}. Try: How is SOL doing?"


def remember_node(state: ChatState, config: RunnableConfig, runtime: Runtime[ChatContext]) -> dict[str, Any]:
    """Keep the turn's summary and any preference the user stated in the vector memory, when one is configured."""
    ctx = runtime.context
    memory, intent = ctx.memory, state["intent"]
    if memory is None:
        return {}
    if intent.risk_tolerance:
        memory.set_preference(ctx.user, "risk_tolerance", intent.risk_tolerance)
    if intent.favourite_markets:
        memory.set_preference(ctx.user, "favourite_markets", ",".join(intent.favourite_markets))
    facts = state["answer"].facts
    if facts is not None:
        memory.remember_turn(thread_id=_thread(config), user_id=ctx.user, question=state["message"],
                             answer=state["answer"])
        if facts.news:  # headlines read this turn become searchable by meaning for later "why" questions
            memory.remember_news(facts.news)
    return {}


def build_chat_graph(checkpointer: Any) -> Any:
    """The compiled chat graph. ``checkpointer`` keeps threads (``open_checkpointer`` gives the configured one)."""
    graph = StateGraph(ChatState, context_schema=ChatContext)
    graph.add_node("understand", understand_node)
    graph.add_node("gather", gather_node)
    graph.add_node("analyze", analyze_node)
    graph.add_node("respond", respond_node)
    graph.add_node("remember", remember_node)
    graph.add_node("position", orders.position_node)
    graph.add_node("portfolio", orders.portfolio_node)
    graph.add_node("approval", orders.approval_node)
    graph.add_node("explain", explain_node)
    graph.add_node("alert", alert_node)
    graph.add_edge(START, "understand")
    graph.add_conditional_edges("understand", _after_understand,
                                ["gather", "respond", "position", "portfolio", "explain", "alert"])
    graph.add_conditional_edges("explain", _after_explain, ["gather", "respond"])
    graph.add_edge("alert", "respond")
    graph.add_edge("gather", "analyze")
    graph.add_edge("analyze", "respond")
    graph.add_edge("position", "respond")
    graph.add_edge("portfolio", "respond")
    graph.add_edge("respond", "remember")
    graph.add_edge("remember", "approval")
    graph.add_edge("approval", END)
    return graph.compile(checkpointer=checkpointer)


# Types the checkpoint may hold; LangGraph deserialises only these (beyond its own safe set) without complaint.
_STATE_TYPES = [("mikey.domain", name) for name in (
    "Answer", "Facts", "Fact", "Quote", "IndicatorSnapshot", "GroundingReport", "Intent", "Provenance", "Recall",
    "PatternFinding", "SentimentScore", "Signal", "SignalFactor", "RiskAssessment", "RiskCheck", "RiskFactor",
    "RiskAlert", "NewsItem", "TradeProposal")]
assert all(hasattr(domain, name) for _, name in _STATE_TYPES)


@contextmanager
def open_checkpointer(settings: Settings) -> Iterator[Any]:
    """The configured checkpointer: PostgreSQL at ``checkpoint_url``, else SQLite on ``state_db``.

    Either keeps only each thread's latest checkpoint, so a thread's storage grows linearly with its length (see
    ``mikey.agents.checkpoints``): the latest state is all a turn or ``thread_history`` reads.
    """
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

    serde = JsonPlusSerializer(allowed_msgpack_modules=_STATE_TYPES)
    if settings.checkpoint_url:
        from mikey.agents.checkpoints_postgres import open_postgres_saver

        with open_postgres_saver(settings.checkpoint_url, serde) as saver:
            yield saver
        return
    from mikey.agents.checkpoints import open_sqlite_saver

    with open_sqlite_saver(settings.state_db, serde) as saver:
        yield saver


DURABILITY = "exit"
"""Checkpoint a turn once, when it ends: a turn cut short is simply not in the thread, and a turn costs one state
write instead of one per step (measured with benchmarks/chat_turn.py)."""


def _with_deadline(context: ChatContext) -> ChatContext:
    """The context for one turn: its model calls end by ``turn_deadline_seconds`` from now."""
    return replace(context, deadline=time.monotonic() + context.settings.turn_deadline_seconds)


def _awaiting_reply(graph: Any, config: RunnableConfig, user: str) -> bool:
    """Whether the thread is paused at the approval interrupt, waiting for ``user``'s answer to their proposal."""
    return any(isinstance(i.value, dict) and i.value.get("user_id") == user
               for task in graph.get_state(config).tasks for i in task.interrupts)


def _decided(state: dict[str, Any]) -> bool:
    return (state.get("approval") or {}).get("outcome") == "decided"


def run_turn(graph: Any, context: ChatContext, message: str, thread_id: str) -> Answer:
    """One chat turn on ``thread_id``; returns the answer.

    On a thread paused for approval the message first resumes the pause: a plain yes or no is the turn (the
    proposal approved and executed, or rejected); anything else leaves the proposal pending and is answered as a
    turn of its own.
    """
    config: RunnableConfig = {"configurable": {"thread_id": thread_id}}
    if _awaiting_reply(graph, config, context.user):
        state = graph.invoke(Command(resume=message), config, context=_with_deadline(context),
                             durability=DURABILITY)
        if _decided(state):
            return state["answer"]
    state = graph.invoke({"message": message}, config, context=_with_deadline(context), durability=DURABILITY)
    return state["answer"]


def stream_turn(graph: Any, context: ChatContext, message: str, thread_id: str) -> Iterator[str | Reset | Answer]:
    """One chat turn, streamed: grounded text pieces as they are written, then the ``Answer`` (with its facts).

    A ``Reset`` withdraws the pieces shown so far (the model failed mid-answer); the pieces after it are the offline
    writer's, and the answer's text is theirs. A thread paused for approval is resumed first, as in ``run_turn``.
    """
    config: RunnableConfig = {"configurable": {"thread_id": thread_id}}
    inputs: list[Any] = [{"message": message}]
    if _awaiting_reply(graph, config, context.user):
        inputs.insert(0, Command(resume=message))
    for graph_input in inputs:
        streaming = replace(_with_deadline(context), stream=True)
        answer: Answer | None = None
        last: dict[str, Any] = {}
        for mode, chunk in graph.stream(graph_input, config, context=streaming, stream_mode=["custom", "values"],
                                        durability=DURABILITY):
            if mode == "custom":
                yield Reset(chunk["reset"]) if "reset" in chunk else chunk["text"]
            else:
                last = chunk
                if chunk.get("answer") is not None:
                    answer = chunk["answer"]
        if isinstance(graph_input, Command) and not _decided(last):
            continue  # not a yes or a no: the message is a turn of its own
        assert answer is not None, "the chat graph ended without an answer"
        yield answer
        return


def thread_history(graph: Any, thread_id: str) -> list[Turn]:
    """The turns stored for ``thread_id`` (empty for a new thread)."""
    snapshot = graph.get_state({"configurable": {"thread_id": thread_id}})
    return list(snapshot.values.get("history") or [])
