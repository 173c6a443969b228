"""The chat graph, one turn: understand -> gather -> analyze -> ground -> respond -> remember.

Numbers come from ``gather`` (code); words come from ``analyze`` (a model, through the router); ``ground`` removes
every number the words state that the facts do not hold. Messages that need no market facts (greetings, unknown
markets) skip straight to ``respond`` with a rules answer and cost no model call. A checkpointer keeps the thread,
so the next turn sees the history ("and ETH?" after a question about SOL).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime

from mikey import domain
from mikey.agents import grounding, understand
from mikey.agents.prompts import load_prompt
from mikey.agents.state import ChatContext, ChatState, Turn
from mikey.analysis.indicators import PARAMETERS
from mikey.domain import Answer, Facts, Intent
from mikey.market import symbols
from mikey.router.offline import facts_block
from mikey.settings import Settings
from mikey.tools import market as market_tools

ANALYZE_PROMPT = "chat/analyze"
RULES = "rules"  # the writer of answers that need no model


def understand_node(state: ChatState) -> dict[str, Any]:
    """Parse the message; reset the per-turn fields left by the previous turn of the thread."""
    previous = next((t["symbols"] for t in reversed(state.get("history") or []) if t["symbols"]), None)
    intent = understand.parse(state["message"], previous)
    return {"intent": intent, "facts": None, "draft": None, "writer_group": None, "writer_model": None,
            "notice": None, "grounding": None, "answer": None}


def _after_understand(state: ChatState) -> str:
    return "gather" if state["intent"].symbols else "respond"


def gather_node(state: ChatState, runtime: Runtime[ChatContext]) -> dict[str, Any]:
    """Run the tools the intent needs, in parallel, into one ``Facts``."""
    intent = state["intent"]
    feed = runtime.context.feed
    symbol = intent.symbols[0]
    with ThreadPoolExecutor(max_workers=2) as pool:
        quote = pool.submit(market_tools.get_quote, feed, symbol)
        ind = pool.submit(market_tools.get_indicators, feed, symbol)
        facts = Facts(symbol=symbol, quote=quote.result(), indicators=ind.result(), parameters=dict(PARAMETERS))
    return {"facts": facts, "notice": _scope_notice(intent)}


def _scope_notice(intent: Intent) -> str | None:
    notes = []
    if intent.unknown_symbols:
        notes.append(f"I don't cover {', '.join(intent.unknown_symbols)} (markets: {', '.join(symbols.SUPPORTED)}).")
    if len(intent.symbols) > 1:
        notes.append(f"Comparisons are not supported yet; this answer covers {intent.symbols[0]}.")
    if intent.kind in ("trade", "risk", "portfolio", "alert"):
        notes.append(f"{intent.kind.capitalize()} requests are not supported yet; here is the market analysis. "
                     "MIKEY never places a trade from chat.")
    return " ".join(notes) or None


def _analyze_messages(state: ChatState) -> list[dict[str, str]]:
    return load_prompt(ANALYZE_PROMPT).render(question=state["message"], facts_block=facts_block(state["facts"]))


def analyze_node(state: ChatState, config: RunnableConfig, runtime: Runtime[ChatContext]) -> dict[str, Any]:
    """Ask the model for the narrative over the facts, with the versioned prompt."""
    ctx = runtime.context
    done = ctx.chat_model.complete(_analyze_messages(state), role="analyze", group=ctx.group,
                                   thread_id=config["configurable"]["thread_id"])
    notice = state.get("notice")
    if done.group != done.requested_group:
        fallback = f"The {done.requested_group} model did not answer; {done.group} wrote this instead."
        notice = f"{notice} {fallback}" if notice else fallback
    return {"draft": done.text, "writer_group": done.group, "writer_model": done.model, "notice": notice}


def ground_node(state: ChatState, runtime: Runtime[ChatContext]) -> dict[str, Any]:
    """Replace every number of the draft that matches no fact (after cutting any echo of the facts block).

    A draft whose share of verified numbers is under ``min_grounding`` is not worth showing: the offline writer
    renders the facts instead, and the notice says why.
    """
    ctx = runtime.context
    draft = (state["draft"] or "").split("<facts>")[0].strip()
    text, report = grounding.ground(draft, state["facts"])
    if report.score >= ctx.settings.min_grounding or state["writer_group"] == "offline":
        return {"draft": text, "grounding": report}
    done = ctx.chat_model.complete(_analyze_messages(state), role="analyze", group="offline", only=True)
    text, rewritten = grounding.ground(done.text, state["facts"])
    why = (f"The {state['writer_group']} draft stated {len(report.removed)} of {report.checked} numbers that match no "
           "fact; the offline writer rendered the facts instead.")
    notice = f"{state['notice']} {why}" if state.get("notice") else why
    return {"draft": text, "grounding": rewritten, "writer_group": done.group, "writer_model": done.model,
            "notice": notice}


def respond_node(state: ChatState) -> dict[str, Any]:
    """Assemble the answer and add the turn to the thread's history."""
    intent = state["intent"]
    if state.get("facts") is None:
        answer = Answer(text=_rules_text(intent), group=RULES, model=RULES)
    else:
        answer = Answer(text=state["draft"] or "", facts=state["facts"], group=state["writer_group"],
                        model=state["writer_model"], grounding=state["grounding"], notice=state.get("notice"))
    turns: list[Turn] = [
        {"role": "user", "content": state["message"], "symbols": intent.symbols, "group": None},
        {"role": "assistant", "content": answer.text, "symbols": intent.symbols, "group": answer.group},
    ]
    return {"answer": answer, "history": turns}


def _rules_text(intent: Intent) -> str:
    markets = ", ".join(symbols.SUPPORTED)
    if intent.unknown_symbols:
        return f"I don't cover {', '.join(intent.unknown_symbols)}. Markets I cover: {markets}."
    if intent.kind == "smalltalk":
        return f"Hi, I'm MIKEY. Ask me about {markets}, for example: How is SOL doing?"
    return f"I couldn't tell which market you mean. Markets I cover: {markets}. Try: How is SOL doing?"


def remember_node(state: ChatState, config: RunnableConfig, runtime: Runtime[ChatContext]) -> dict[str, Any]:
    """Keep a summary of the turn in the vector memory, when one is configured."""
    memory = runtime.context.memory
    if memory is not None and state["answer"].facts is not None:
        thread = config["configurable"]["thread_id"]
        memory.remember_turn(thread_id=thread, question=state["message"], answer=state["answer"])
    return {}


def build_chat_graph(checkpointer: Any) -> Any:
    """The compiled chat graph. ``checkpointer`` keeps threads (``open_checkpointer`` gives the default)."""
    graph = StateGraph(ChatState, context_schema=ChatContext)
    graph.add_node("understand", understand_node)
    graph.add_node("gather", gather_node)
    graph.add_node("analyze", analyze_node)
    graph.add_node("ground", ground_node)
    graph.add_node("respond", respond_node)
    graph.add_node("remember", remember_node)
    graph.add_edge(START, "understand")
    graph.add_conditional_edges("understand", _after_understand, ["gather", "respond"])
    graph.add_edge("gather", "analyze")
    graph.add_edge("analyze", "ground")
    graph.add_edge("ground", "respond")
    graph.add_edge("respond", "remember")
    graph.add_edge("remember", END)
    return graph.compile(checkpointer=checkpointer)


# Types the checkpoint may hold; LangGraph deserialises only these (beyond its own safe set) without complaint.
_STATE_TYPES = [("mikey.domain", name) for name in
                ("Answer", "Facts", "Quote", "IndicatorSnapshot", "GroundingReport", "Intent", "Fact")]
assert all(hasattr(domain, name) for _, name in _STATE_TYPES)


@contextmanager
def open_checkpointer(settings: Settings) -> Iterator[Any]:
    """The embedded checkpointer: a SqliteSaver on ``settings.state_db``."""
    from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
    from langgraph.checkpoint.sqlite import SqliteSaver

    settings.state_db.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(settings.state_db, check_same_thread=False)
    try:
        yield SqliteSaver(conn, serde=JsonPlusSerializer(allowed_msgpack_modules=_STATE_TYPES))
    finally:
        conn.close()


def run_turn(graph: Any, context: ChatContext, message: str, thread_id: str) -> Answer:
    """One chat turn on ``thread_id``; returns the answer."""
    state = graph.invoke({"message": message}, {"configurable": {"thread_id": thread_id}}, context=context)
    return state["answer"]


def thread_history(graph: Any, thread_id: str) -> list[Turn]:
    """The turns stored for ``thread_id`` (empty for a new thread)."""
    snapshot = graph.get_state({"configurable": {"thread_id": thread_id}})
    return list(snapshot.values.get("history") or [])
