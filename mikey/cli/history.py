"""``mikey history``: the messages a conversation thread holds."""

from __future__ import annotations

from typing import Annotated

import typer

from mikey.cli.common import load_settings
from mikey.errors import InvalidInput


def history(thread: Annotated[str, typer.Option("--thread", "-t", help="Conversation to show.")]) -> None:
    """Show the messages stored for a conversation thread."""
    from rich.console import Console

    from mikey.agents.chat import build_chat_graph, open_checkpointer, thread_history

    console = Console()
    with open_checkpointer(load_settings()) as checkpointer:
        turns = thread_history(build_chat_graph(checkpointer), thread)
    if not turns:
        raise InvalidInput(f"no conversation stored for thread {thread!r}")
    for turn in turns:
        who = "you" if turn["role"] == "user" else f"mikey ({turn['group']})"
        console.print(f"[bold]{who}>[/bold] {turn['content']}", highlight=False)
