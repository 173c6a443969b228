"""Terminal rendering of an answer: the grounded words, a facts card with sources and as-of times, the writer."""

from __future__ import annotations

from typing import Any

from mikey.domain import Answer


def render_answer(console: Any, answer: Answer) -> None:
    """Print ``answer`` on a rich console."""
    from rich.panel import Panel
    from rich.table import Table

    console.print(answer.text, highlight=False)
    if answer.notice:
        console.print(f"[yellow]note:[/yellow] {answer.notice}", highlight=False)
    if answer.facts is not None:
        table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
        for column in ("fact", "value", "source", "as of (UTC)"):
            table.add_column(column)
        for fact in answer.facts.numbers():
            table.add_row(fact.label, fact.display, fact.source, fact.as_of.date().isoformat())
        console.print(Panel(table, title=f"Facts: {answer.facts.symbol}", title_align="left", expand=False))
    written = "rules (no model needed)" if answer.group == "rules" else f"{answer.group} ({answer.model})"
    line = f"Written by {written}."
    if answer.grounding.checked:
        g = answer.grounding
        line += f" Numbers checked against the facts: {g.matched}/{g.checked} matched"
        line += f", {len(g.removed)} removed." if g.removed else "."
    console.print(f"[dim]{line}[/dim]", highlight=False)
