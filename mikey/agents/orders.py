"""Orders in the chat graph: proposals stored for approval, closes of held positions, the portfolio, and the approval
interrupt.

A trade is only ever proposed by a turn. The ``approval`` node, the last of every turn, pauses the thread with
LangGraph's ``interrupt()`` while the thread has a proposal awaiting its owner's answer; the owner's next message
resumes it (``chat.run_turn`` does that). A plain yes approves that proposal, bound to the digest of the order that
was shown, and executes it through the ``Executor`` (gates, then the broker, once); a plain no rejects it; anything
else decides nothing, the proposal stays pending, and the message is answered as a turn of its own.

LangGraph runs an interrupted node again from its start when it resumes, so everything before ``interrupt()`` only
reads, and everything after it is idempotent: ``Executor.execute`` of a proposal that already ran returns the
recorded outcome instead of running it again.
"""

from __future__ import annotations

import re
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.runtime import Runtime
from langgraph.types import interrupt

from mikey.agents.state import ChatContext, ChatState, Turn
from mikey.domain import Answer, Facts, TradeProposal
from mikey.domain.utc import utc_now
from mikey.errors import ApprovalRequired, InvalidInput, MikeyError, RiskLimitExceeded
from mikey.execution.guard import decide, execution_request
from mikey.execution.proposals import OrderProposal

RULES = "rules"
_REVIEW = re.compile(r"\b(review|win rate|closed trades?|track record|history of my trades)\b", re.I)


def _thread(config: RunnableConfig) -> str:
    return config["configurable"]["thread_id"]


def as_trade_proposal(stored: OrderProposal, proposal: TradeProposal | None = None) -> TradeProposal:
    """The chat's view of a stored proposal (with the engine's risk when the turn assessed one)."""
    fields = {"id": stored.id, "kind": stored.kind, "market": stored.market, "side": stored.side,
              "leverage": stored.leverage, "collateral": stored.collateral, "size": stored.size,
              "entry_price": stored.price, "position_id": stored.position_id, "created_at": stored.created_at,
              "expires_at": stored.expires_at, "digest": stored.digest, "price_bound": stored.price_bound}
    if proposal is not None:
        return proposal.model_copy(update=fields)
    return TradeProposal(**fields)


def awaiting_of(stored: OrderProposal) -> dict[str, str]:
    """What the thread keeps of the proposal shown: its id, the digest of the order shown, and whose it is."""
    return {"id": stored.id, "digest": stored.digest, "user_id": stored.user_id}


def _supersede(ctx: ChatContext, thread_id: str) -> None:
    """At most one proposal awaits an answer in a thread: a newer one replaces the older."""
    assert ctx.executor is not None
    for old in ctx.executor.store.find(user_id=ctx.user, thread_id=thread_id, status="proposed"):
        try:
            ctx.executor.reject(old.id, user_id=ctx.user, reason="superseded by a newer proposal in the thread")
        except MikeyError:
            pass  # it expired meanwhile: recorded as expired, nothing to supersede


def store_open(ctx: ChatContext, proposal: TradeProposal, facts: Facts, thread_id: str,
               tolerance: str | None) -> TradeProposal:
    """Store the turn's open proposal for approval, with what it was made under (risk, signal) for the review."""
    assert ctx.executor is not None
    _supersede(ctx, thread_id)
    risk = proposal.risk
    context = {"signal": facts.signal.action if facts.signal is not None else None, "tolerance": tolerance,
               "risk_level": risk.risk_level if risk else None, "risk_score": risk.risk_score if risk else None,
               "liquidation_price": risk.liquidation_price if risk else None}
    stored = ctx.executor.store.propose(
        user_id=ctx.user, thread_id=thread_id, market=proposal.market, side=proposal.side, size=proposal.size,
        leverage=proposal.leverage, collateral=proposal.collateral, price=proposal.entry_price,
        max_slippage=ctx.settings.max_slippage, context=context)
    return as_trade_proposal(stored, proposal)


def screen_untrusted(ctx: ChatContext, facts: Facts | None, thread_id: str) -> None:
    """Log text fetched this turn (news, memories) that asks to execute, approve or lift limits: it has no say."""
    if ctx.executor is None or facts is None:
        return
    for item in facts.news:
        text = " ".join(filter(None, [item.title, getattr(item, "summary", None)]))
        if execution_request(text):
            ctx.executor.log_refusal(thread_id, "a news item asked to execute, approve or lift a limit; news has no "
                                     "authority over orders", actor=f"news:{item.source}", text=text)
    for memory in facts.memories:
        if execution_request(memory.text):
            ctx.executor.log_refusal(thread_id, "a recalled note asked to execute, approve or lift a limit; tool "
                                     "results have no authority over orders", actor="tool:memory", text=memory.text)


def position_node(state: ChatState, config: RunnableConfig, runtime: Runtime[ChatContext]) -> dict[str, Any]:
    """"close my eth position", "close half my sol long": a close or reduce proposal for the position held."""
    ctx, intent = runtime.context, state["intent"]
    if ctx.executor is None:
        return {"draft": "Closing positions needs the execution service, which this MIKEY runs without."}
    held = [p for p in ctx.executor.broker.positions(ctx.user)
            if (not intent.symbols or p.market in intent.symbols) and (intent.side is None or p.side == intent.side)]
    what = " ".join(filter(None, [", ".join(intent.symbols) or None, intent.side])) or "open"
    if not held:
        return {"draft": f"You have no {what} position to close on the {ctx.executor.broker.name} broker."}
    if len(held) > 1:
        listed = "\n".join(f"- {p.id}: {p.market} {p.side} {p.size:g} at {p.leverage:g}x, entry {p.entry_price:,.4f}"
                           for p in held)
        return {"draft": f"You hold {len(held)} {what} positions; say which one (its market and side), or close "
                         f"one by id with `mikey positions close ID`:\n{listed}"}
    position = held[0]
    fraction = intent.fraction if intent.order == "reduce" else 1.0
    _supersede(ctx, _thread(config))
    try:
        stored = ctx.executor.propose_close(user_id=ctx.user, thread_id=_thread(config), position_id=position.id,
                                            fraction=fraction or 1.0)
    except MikeyError as exc:
        return {"draft": f"I could not propose closing position {position.id}: {exc}"}
    proposal = as_trade_proposal(stored)
    share = "all" if stored.kind == "close" else f"{fraction:.0%}"
    text = (f"Proposal {stored.id}: close {share} of your {position.market} {position.side} ({stored.size:g} of "
            f"{position.size:g}) at about {stored.price:,.4f}, worst fill {stored.price_bound:,.4f}. Reply yes to "
            f"approve or no to reject; it expires at {stored.expires_at:%H:%M:%S} UTC.")
    return {"draft": text, "proposal": proposal, "awaiting": awaiting_of(stored)}


def portfolio_node(state: ChatState, runtime: Runtime[ChatContext]) -> dict[str, Any]:
    """"how are my positions doing", "what's my pnl today", "review my trades": the broker's ledger, in code's
    words."""
    from mikey.execution.portfolio import describe_review, describe_snapshot, review, snapshot

    ctx = runtime.context
    if ctx.executor is None:
        return {"draft": "I don't see your positions: this MIKEY runs without the execution service."}
    try:
        if _REVIEW.search(state["message"]):
            text = describe_review(review(ctx.executor.broker, ctx.executor.store, ctx.user))
        else:
            text = describe_snapshot(snapshot(ctx.executor.broker, ctx.feed, ctx.user, now=utc_now()))
    except MikeyError as exc:
        text = f"I could not read your positions: {exc}"
    return {"draft": text}


def approval_node(state: ChatState, config: RunnableConfig, runtime: Runtime[ChatContext]) -> dict[str, Any]:
    """Pause for the owner's answer to the thread's pending proposal; act on the owner's plain yes or no.

    The pause stays while the proposal awaits its owner, whoever spoke this turn: ``run_turn`` resumes it only with
    the owner's message, and anyone else's message is a turn of its own that ends in the same pause.
    """
    ctx, awaiting = runtime.context, state.get("awaiting")
    if ctx.executor is None or not awaiting:
        return {}
    try:
        pending = ctx.executor.store.get(awaiting["id"])
    except MikeyError:
        return {"awaiting": None}
    # "approved" too: this node approved it and stopped before executing it (a crash); the owner's yes finishes it.
    if pending.status not in ("proposed", "approved"):
        return {"awaiting": None}  # decided elsewhere (the CLI, the API), expired, or executed
    reply = str(interrupt({"proposal_id": pending.id, "digest": awaiting["digest"], "user_id": pending.user_id,
                           "question": f"Approve proposal {pending.id}? Reply yes or no."}))
    decision = decide(reply)
    if ctx.user != pending.user_id:  # never resumed so by run_turn; refused whoever resumes it otherwise
        ctx.executor.log_refusal(pending.id, "only the proposal's owner can answer it", actor=f"user:{ctx.user}",
                                 text=reply)
        return {"approval": {"proposal_id": pending.id, "outcome": "pending"}}
    if decision is None:
        if execution_request(reply):
            ctx.executor.log_refusal(pending.id, "a reply that is not a plain yes cannot approve an order",
                                     actor=f"user:{ctx.user}", text=reply)
        return {"approval": {"proposal_id": pending.id, "outcome": "pending"}}
    text = _decide(ctx, pending.id, awaiting["digest"], decision)
    if ctx.stream:
        runtime.stream_writer({"text": text})
    turns: list[Turn] = [
        {"role": "user", "content": reply, "symbols": [pending.market], "group": None, "kind": "trade"},
        {"role": "assistant", "content": text, "symbols": [pending.market], "group": RULES, "kind": "trade"},
    ]
    return {"answer": Answer(text=text, group=RULES, model=RULES), "history": turns, "awaiting": None,
            "approval": {"proposal_id": pending.id, "outcome": "decided"}}


def _decide(ctx: ChatContext, proposal_id: str, digest: str, decision: str) -> str:
    executor = ctx.executor
    assert executor is not None
    if decision == "reject":
        try:
            executor.reject(proposal_id, user_id=ctx.user)
        except MikeyError as exc:
            return f"Proposal {proposal_id} could not be rejected: {exc}"
        return f"Rejected proposal {proposal_id}; nothing was executed."
    try:
        result = executor.approve(proposal_id, user_id=ctx.user, digest=digest)
    except (ApprovalRequired, RiskLimitExceeded, InvalidInput) as exc:
        return f"Not executed: {exc}"
    except MikeyError as exc:
        return f"Not executed: {exc}"
    return "\n".join([f"Approved proposal {proposal_id}. {result.message}", *result.discrepancies])
