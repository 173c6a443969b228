"""``mikey models`` (the model groups, their deployments and each role's chain) and ``mikey usage`` (model calls,
tokens and cost from the ledger)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from mikey.cli.common import load_settings


def models(
    live: Annotated[bool, typer.Option("--live", help="Also show cooldowns (shared between processes via Redis).")]
    = False,
) -> None:
    """List the model groups and their deployments: usable or not, why not, and the chain of each role."""
    from rich.console import Console
    from rich.table import Table

    from mikey.router.groups import model_groups, role_chain

    settings = load_settings()
    groups = model_groups(settings)
    cooldowns: dict[str, float] = {}
    if live:
        from mikey.router.chat_model import RouterChatModel

        cooldowns = RouterChatModel(settings, groups).cooldowns()
    table = Table(title="Model groups")
    for column in ("group", "deployment", "model", "family", "usable", "why", *(["cooldown"] if live else [])):
        table.add_column(column)
    for group in groups.values():
        for d in group.deployments:
            mark = "[green]yes[/green]" if d.usable else "[red]no[/red]"
            row = [group.name, d.id, d.description or d.model, d.family, mark, d.reason]
            if live:
                row.append(f"{cooldowns[d.id]:.0f}s left" if d.id in cooldowns else "-")
            table.add_row(*row)
    console = Console()
    console.print(table)
    for role in sorted(settings.roles):
        chain = " -> ".join(role_chain(settings, groups, role, first=settings.default_model)) or "(none usable)"
        console.print(f"role {role}: {chain}", highlight=False)


def usage() -> None:
    """Model calls, tokens and cost by day, group and role, from the ledger."""
    from rich.console import Console
    from rich.table import Table

    from mikey.router.ledger import Ledger

    settings = load_settings()
    rows: list[dict[str, Any]] = []
    if settings.ledger_db.exists():  # a fresh home has no ledger yet: its report is empty, not an error
        ledger = Ledger(settings.ledger_db)
        try:
            rows = ledger.usage()
        finally:
            ledger.close()
    table = Table(title=f"Model usage ({settings.ledger_db})")
    for column in ("day", "group", "role", "calls", "ok", "cache hits", "tokens in", "tokens out", "cost USD"):
        table.add_column(column, justify="right" if column not in ("day", "group", "role") else "left")
    for r in rows:
        table.add_row(r["day"], r["model_group"], r["role"], str(r["calls"]), str(r["ok"]), str(r["cache_hits"]),
                      str(r["tokens_in"]), str(r["tokens_out"]), f"{r['cost_usd']:.6f}")
    total = sum(r["cost_usd"] for r in rows)
    Console().print(table)
    if not rows:
        Console().print("no model calls recorded yet", highlight=False)
    Console().print(f"total cost: ${total:.6f} over {sum(r['calls'] for r in rows)} calls", highlight=False)
