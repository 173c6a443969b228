"""Terminal rendering of an answer: the grounded words, a facts card with sources and as-of times, the writer."""

from __future__ import annotations

from typing import Any

from mikey.domain import Answer, TradeProposal


def render_answer(console: Any, answer: Answer, *, text_shown: bool = False) -> None:
    """Print ``answer`` on a rich console (``text_shown``: its words were already streamed)."""
    from rich.panel import Panel
    from rich.table import Table

    if not text_shown:
        console.print(answer.text, highlight=False, markup=False)
    if answer.notice:
        console.print("[yellow]note:[/yellow] ", end="")
        console.print(answer.notice, highlight=False, markup=False)
    if answer.facts is not None:
        table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
        for column in ("fact", "value", "source", "as of (UTC)"):
            table.add_column(column)
        for fact in answer.facts.numbers():
            table.add_row(fact.label, fact.display, fact.source, fact.as_of.date().isoformat())
        facts = answer.facts
        if facts.signal is not None:
            reasons = "; ".join(f.reason for f in sorted(facts.signal.factors, key=lambda f: -abs(f.contribution))[:3])
            table.add_row("Signal", facts.signal.action, reasons, facts.signal.as_of.date().isoformat())
        if facts.sentiment is not None and facts.sentiment.items:
            table.add_row("Sentiment", facts.sentiment.label, f"{facts.sentiment.items} headlines", "")
        if facts.risk is not None:
            table.add_row("Risk level", facts.risk.risk_level, "; ".join(facts.risk.reasons[:2]), "")
        for tool in facts.provenance:
            if tool.error:
                table.add_row(f"({tool.tool})", "unavailable", tool.error, "")
        markets = ", ".join([facts.symbol, *(o.symbol for o in facts.compared)])
        console.print(Panel(table, title=f"Facts: {markets}", title_align="left", expand=False))
    if answer.proposal is not None:
        console.print(_proposal_panel(answer.proposal))
    written = "rules (no model needed)" if answer.group == "rules" else f"{answer.group} ({answer.model})"
    line = f"Written by {written}."
    if answer.grounding.checked:
        g = answer.grounding
        line += f" Numbers checked against the facts: {g.matched}/{g.checked} matched"
        line += f", {len(g.removed)} removed." if g.removed else "."
    console.print(f"[dim]{line}[/dim]", highlight=False)


def _proposal_panel(p: TradeProposal) -> Any:
    from rich.panel import Panel

    verb = {"open": "", "close": "CLOSE ", "reduce": "REDUCE "}[p.kind]
    body = (f"{verb}{p.side.upper()} {p.market} {p.leverage:g}x, collateral {p.collateral:,.2f} USD, size {p.size:.4f} "
            f"at {p.entry_price} USD")
    if p.price_bound is not None:
        body += f" (worst fill {p.price_bound:.4f})"
    if p.risk is not None:
        r = p.risk
        liquidation = "none" if r.liquidation_price is None else f"{r.liquidation_price:.4f} USD"
        failed = [c.name for c in r.checks if not c.passed]
        body += (f"\nliquidation {liquidation}, risk {r.risk_level} ({r.risk_score:.0f}/100)"
                 + (f", failed checks: {', '.join(failed)}" if failed else ", all checks passed"))
    if p.expires_at is not None:
        body += f"\nexpires {p.expires_at:%H:%M:%S} UTC"
    body += f"\n{p.note}"
    return Panel(body, title=f"Trade proposal {p.id}: awaiting your approval", title_align="left", expand=False,
                 border_style="yellow")
