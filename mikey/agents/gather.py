"""The gather step of a chat turn: which tools an intent needs, run in parallel, into one typed ``Facts``.

Every tool result lands in ``Facts`` with a ``Provenance`` (tool, source, as-of); a tool that fails leaves its field
empty and its error in the provenance, and the turn goes on with the rest, except the first market's quote: without
it there is nothing to answer about, and its error ("no SOL data on or before 2019-01-01") is the turn's. Trade
intents also get a ``TradeProposal``: built only from parameters the user wrote, with the risk engine's assessment,
and never executed.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from mikey.agents.state import ChatContext
from mikey.analysis.indicators import PARAMETERS
from mikey.domain import Facts, Intent, NewsItem, PositionInput, Provenance, Recall, TradeProposal
from mikey.errors import MikeyError
from mikey.tools import market as market_tools

ANALYSIS_KINDS = frozenset({"analysis", "explain", "compare", "alert"})
POSITION_KINDS = frozenset({"risk", "trade"})
MAX_COMPARED = 3
DEFAULT_COLLATERAL = 1000.0
"""USD collateral assumed for a risk question that names none ("how risky is 10x long SOL?"); the answer says so."""


@dataclass
class Gathered:
    facts: Facts
    proposal: TradeProposal | None = None
    notes: list[str] = field(default_factory=list)
    assumed: str | None = None
    """Values the answer assumed because the question did not give them ("1x leverage, 1,000 USD collateral")."""
    comparison: str | None = None
    """The computed winners of a comparison, in one line (code-written)."""


def plan(intent: Intent) -> list[str]:
    """The tools an intent needs, by name, for its first market."""
    tools = ["quote", "indicators"]
    if intent.kind in ANALYSIS_KINDS:
        tools += ["analysis", "memory"]
    if intent.kind == "trade":
        tools.append("analysis")  # the signal a proposal is made under, kept for the trade review
    if intent.kind in POSITION_KINDS:
        tools.append("risk")
    return tools


def gather(ctx: ChatContext, intent: Intent, message: str, preferences: dict[str, str]) -> Gathered:
    """Run the intent's tools in parallel; a failing tool is recorded, not raised."""
    symbol, others = intent.symbols[0], intent.symbols[1:MAX_COMPARED]
    tools = plan(intent)
    news = _news(ctx, intent.symbols) if "analysis" in tools else {}
    position = _position(intent) if "risk" in tools else None
    calls: dict[str, Callable[[], Any]] = {
        "quote": lambda: market_tools.get_quote(ctx.feed, symbol),
        "indicators": lambda: market_tools.get_indicators(ctx.feed, symbol),
        "analysis": lambda: _analysis(ctx, symbol, news.get(symbol, [])),
        "memory": lambda: _recall(ctx, message, symbol, intent.kind),
        "risk": lambda: _risk(ctx, symbol, position, intent.risk_tolerance or preferences.get("risk_tolerance")),
    }
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {name: pool.submit(_attempt, name, calls[name], ctx) for name in tools}
        compared = [pool.submit(_market_facts, ctx, other, news.get(other, [])) for other in others]
        results, provenance, errors = _outcomes({name: f.result() for name, f in futures.items()})
        if "quote" in errors:  # no answer about a market without its price: the user gets the reason
            raise errors["quote"]
        facts = Facts(symbol=symbol, parameters=dict(PARAMETERS), provenance=provenance,
                      quote=results.get("quote"), indicators=results.get("indicators"),
                      risk=results.get("risk"), memories=results.get("memory") or [], news=news.get(symbol, []))
        if (report := results.get("analysis")) is not None:
            facts = facts.model_copy(update={"patterns": report.patterns, "sentiment": report.sentiment,
                                             "signal": report.signal})
        facts.compared = [f.result() for f in compared]
    gathered = Gathered(facts=facts)
    if position is not None and position.get("assumed") and intent.kind != "trade":
        gathered.assumed = position["assumed"]
    if facts.compared:
        gathered.comparison = comparison_line(facts)
    if intent.kind == "trade":
        gathered.proposal, missing = _proposal(intent, facts)
        if missing:
            gathered.notes.append(f"To propose a trade I need the {', '.join(missing)} in your message, e.g. "
                                  f"\"open a 5x long on {symbol} with 300 USDC\". Nothing was proposed.")
        elif gathered.proposal is None:
            reason = next((p.error for p in facts.provenance if p.tool == "risk" and p.error), None)
            gathered.notes.append(f"Nothing was proposed: the risk engine refused the position ({reason})."
                                  if reason else "Nothing was proposed: the risk assessment is missing.")
    return gathered


def comparison_line(facts: Facts) -> str | None:
    """Which market wins on each computed measure of a comparison (higher RSI(14), bigger gain on the day); ties and
    missing values are left out."""
    markets = [facts, *facts.compared]
    parts = []

    def winner(label: str, value: Callable[[Facts], float | None], fmt: str) -> None:
        scored = [(f.symbol, v) for f in markets if (v := value(f)) is not None]
        if len(scored) < 2:
            return
        scored.sort(key=lambda item: item[1], reverse=True)
        if scored[0][1] == scored[1][1]:
            return
        others = ", ".join(f"{s} {format(v, fmt)}" for s, v in scored[1:])
        parts.append(f"{label}: {scored[0][0]} ({format(scored[0][1], fmt)} vs {others})")

    # Only values the facts hold (the grounding check traces every number of an answer to a fact).
    winner("higher RSI(14)", lambda f: f.indicators.rsi_14 if f.indicators else None, ".2f")
    winner("bigger gain on the day (%)", lambda f: f.quote.change_pct if f.quote else None, "+.2f")
    return ("Compared by code: " + "; ".join(parts) + ".") if parts else None


Outcome = tuple[Any, Provenance, MikeyError | None]
_SOURCES = {"memory": "chroma", "risk": "risk engine"}  # the other tools read the feed


def _attempt(name: str, call: Callable[[], Any], ctx: ChatContext) -> Outcome:
    """Run one tool: its value and provenance, or its error (recorded in the provenance, not raised)."""
    source = _SOURCES.get(name, ctx.feed.name)
    try:
        value = call()
    except MikeyError as exc:
        return None, Provenance(tool=name, source=source, error=str(exc)), exc
    return value, Provenance(tool=name, source=source, as_of=getattr(value, "as_of", None)), None


def _outcomes(outcomes: dict[str, Outcome]) -> tuple[dict[str, Any], list[Provenance], dict[str, MikeyError]]:
    """Values of the tools that answered, every tool's provenance, and the errors of those that did not."""
    values = {name: value for name, (value, _, error) in outcomes.items() if error is None}
    errors = {name: error for name, (_, _, error) in outcomes.items() if error is not None}
    return values, [provenance for _, provenance, _ in outcomes.values()], errors


def _market_facts(ctx: ChatContext, symbol: str, news: list[NewsItem]) -> Facts:
    """The facts of one more market of a comparison: quote, indicators, signal."""
    calls = {"quote": lambda: market_tools.get_quote(ctx.feed, symbol),
             "indicators": lambda: market_tools.get_indicators(ctx.feed, symbol),
             "analysis": lambda: _analysis(ctx, symbol, news)}
    results, provenance, _ = _outcomes({name: _attempt(name, call, ctx) for name, call in calls.items()})
    report = results.get("analysis")
    return Facts(symbol=symbol, quote=results.get("quote"), indicators=results.get("indicators"),
                 signal=report.signal if report else None, provenance=provenance)


def _analysis(ctx: ChatContext, symbol: str, news: list[NewsItem]) -> Any:
    from mikey.tools.analysis import analyze_market

    return analyze_market(ctx.feed, symbol, news=news, with_backtest=False)


def _news(ctx: ChatContext, markets: list[str]) -> dict[str, list[NewsItem]]:
    """Recent headlines per market from the news source, up to the feed's clock."""
    if ctx.news is None:
        return {}
    out: dict[str, list[NewsItem]] = {}
    for symbol in markets[:MAX_COMPARED]:
        end = _clock(ctx, symbol)
        try:
            out[symbol] = ctx.news.news(end - timedelta(days=ctx.settings.news_lookback_days), end, symbol=symbol)
        except MikeyError:
            out[symbol] = []
    return out


def _clock(ctx: ChatContext, symbol: str) -> datetime:
    """The feed's "now" for ``symbol`` (a replay's as-of bar), else the wall clock."""
    now = getattr(ctx.feed, "now", None)
    return now(symbol) if callable(now) else datetime.now(UTC)


def _recall(ctx: ChatContext, message: str, symbol: str, kind: str) -> list[Recall]:
    """Earlier turns and insights about ``symbol`` closest to the message; a "why" question also searches the
    remembered headlines by meaning (not only the last days' ones the news source gives)."""
    from mikey.memory.store import CONVERSATIONS, INSIGHTS, NEWS

    if ctx.memory is None or ctx.settings.memory_recall_k == 0:
        return []
    collections = (CONVERSATIONS, INSIGHTS, NEWS) if kind == "explain" else (CONVERSATIONS, INSIGHTS)
    return ctx.memory.recall(message, collections=collections, k=ctx.settings.memory_recall_k, user_id=ctx.user,
                             symbol=symbol)


def _position(intent: Intent) -> dict[str, Any]:
    """Side, leverage and collateral of the position the question is about; defaults are named in ``assumed``."""
    assumed = []
    side = intent.side or "long"
    if intent.side is None:
        assumed.append("a long position")
    leverage = intent.leverage or 1.0
    if intent.leverage is None:
        assumed.append("1x leverage")
    collateral = intent.collateral or DEFAULT_COLLATERAL
    if intent.collateral is None:
        assumed.append(f"{DEFAULT_COLLATERAL:,.0f} USD collateral")
    return {"side": side, "leverage": leverage, "collateral": collateral, "assumed": ", ".join(assumed)}


def _risk(ctx: ChatContext, symbol: str, position: dict[str, Any] | None, tolerance: str | None) -> Any:
    from mikey.risk.checks import LIMITS_BY_TOLERANCE
    from mikey.tools.risk import assess_with_history, history_from_feed

    assert position is not None
    history = history_from_feed(ctx.feed, symbol)
    size = position["collateral"] * position["leverage"] / history.price
    request = PositionInput(market=symbol, side=position["side"], size=size, collateral=position["collateral"],
                            leverage=position["leverage"])
    return assess_with_history(request, history, limits=LIMITS_BY_TOLERANCE.get(tolerance or "medium"))


def _proposal(intent: Intent, facts: Facts) -> tuple[TradeProposal | None, list[str]]:
    """A proposal when the user wrote side, leverage and collateral and the risk engine assessed it."""
    missing = [name for name, value in (("side (long or short)", intent.side), ("leverage", intent.leverage),
                                        ("collateral", intent.collateral)) if value is None]
    if missing or facts.risk is None:
        return None, missing or ["market data for the risk assessment"]
    risk = facts.risk
    # The leverage and collateral the user wrote, exactly (the engine's notional / collateral is off by a float ulp,
    # and an order is approved, and checked against limits, as written).
    return TradeProposal(id=uuid.uuid4().hex[:12], market=risk.market, side=risk.side, leverage=intent.leverage,
                         collateral=intent.collateral, size=risk.size, entry_price=risk.entry_price, risk=risk,
                         created_at=datetime.now(UTC)), []
