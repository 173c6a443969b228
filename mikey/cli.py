"""The ``mikey`` command line (typer + rich): a composition root.

Heavy modules (litellm, langgraph, pandas, torch, chromadb) are imported inside the commands that need them, so
``mikey --help`` stays fast. Every ``MikeyError`` ends as one line on stderr and exit code 1, never a traceback.
"""

from __future__ import annotations

import os
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, date, datetime, time
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from mikey.errors import ConfigError, InvalidInput, MikeyError

if TYPE_CHECKING:
    from concurrent.futures import Future

    from mikey.settings import Settings

T = TypeVar("T")

app = typer.Typer(
    name="mikey",
    help="MIKEY: AI market analysis and chat for Solana perpetuals. Numbers are computed by code, words by models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

EXIT_WORDS = {"exit", "quit", ":q", "bye"}


def _register_subcommands() -> None:
    from mikey.cli_analyze import analyze
    from mikey.cli_data import data_app
    from mikey.cli_insights import insights
    from mikey.cli_risk import risk_app, serve

    app.add_typer(data_app, name="data")
    app.add_typer(risk_app, name="risk")
    app.command()(analyze)
    app.command()(serve)
    app.command()(insights)


def _settings(**overrides: object) -> Settings:
    from pydantic import ValidationError

    from mikey.settings import Settings

    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "settings"
        raise ConfigError(f"invalid setting {field}: {first['msg']}") from exc


@app.command()
def chat(
    message: Annotated[str | None, typer.Argument(help="Ask once and exit; omit for an interactive chat.")] = None,
    thread: Annotated[str | None, typer.Option("--thread", "-t", help="Conversation to continue.")] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Model group to ask first.")] = None,
    as_of: Annotated[str | None, typer.Option("--as-of", help="Replay clock, YYYY-MM-DD.")] = None,
    user: Annotated[str | None, typer.Option("--user", "-u", help="Whose preferences and memories to use.")] = None,
    stream: Annotated[bool, typer.Option("--stream/--no-stream", help="Show the words as they are written.")] = True,
) -> None:
    """Chat with MIKEY about BTC, ETH and SOL."""
    from mikey.memory.background import open_in_background
    from mikey.router.chat_model import RouterChatModel
    from mikey.router.ledger import Ledger

    if message is not None and not message.strip():
        raise InvalidInput("the message is empty; ask something like: mikey chat \"How is SOL doing?\"")
    if user is not None and not user.strip():
        raise InvalidInput("--user is empty; give a name, e.g. --user alice")
    clock = _parse_date(as_of, "--as-of") if as_of else None
    settings = _settings(as_of=clock)
    chat_model = RouterChatModel(settings, ledger=Ledger(settings.ledger_db))
    group = model or settings.default_model
    chain = chat_model.chain("analyze", group)  # a clear error now for an unknown or unusable group
    # The slow parts load in parallel and off the prompt's path: the local model's worker process, litellm's import,
    # the memory (Chroma and the embedder) and the chat graph each in a thread of their own. A turn waits only for
    # what it uses, and the memory's writes run after the answer is shown (closing the memory waits for them).
    _warm_local(settings, chain)
    _import_litellm_in_background()
    memory = open_in_background(settings)
    thread_id = thread or uuid.uuid4().hex[:8]
    from rich.console import Console

    console = Console()
    with ExitStack() as resources:
        resources.enter_context(_closing(memory))
        opened = ExitStack()  # what the loader opens; closed once the loader is done, even if the chat ended first
        loading = _in_background("mikey-chat-graph", _load_chat, opened, settings, chat_model, group, memory, user,
                                 thread_id)
        resources.callback(_close_when_loaded, loading, opened)
        if message is not None:
            graph, context, earlier = _ready(loading, memory)
            _continuing(console, thread, earlier)
            _turn(console, graph, context, message, thread_id, stream)
            console.print(f"[dim]thread {thread_id} — continue with: mikey chat --thread {thread_id}[/dim]")
            return
        console.print(f"MIKEY chat ({' -> '.join(chain)}), thread {thread_id}. Type 'exit' to leave.")
        first = True
        while True:
            try:
                line = console.input("[bold cyan]you>[/bold cyan] ").strip()
            except (EOFError, KeyboardInterrupt):
                console.print()
                return
            if line.lower() in EXIT_WORDS:
                return
            if not line:
                continue
            graph, context, earlier = _ready(loading, memory)  # the first turn waits for what still loads
            if first:
                _continuing(console, thread, earlier)
                first = False
            try:
                if memory is not None:
                    memory.flush()  # the previous turn's writes: one that failed is reported here
                _turn(console, graph, context, line, thread_id, stream)
            except MikeyError as exc:  # one bad turn does not end the session
                console.print(f"[red]error:[/red] {exc}")


def _import_litellm_in_background() -> None:
    """Start litellm's import (seconds) now, so that the first model call finds it done."""
    from mikey.router.providers import import_litellm

    def run() -> None:
        try:
            import_litellm()
        except Exception:  # the first model call imports it again, and reports the error to the user there
            pass

    threading.Thread(target=run, name="mikey-import-litellm", daemon=True).start()


def _in_background(name: str, fn: Callable[..., T], *args: Any) -> Future[T]:
    """``fn(*args)`` in a thread of its own (not a daemon: it finishes before the process exits)."""
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
    future = pool.submit(fn, *args)
    pool.shutdown(wait=False)
    return future


def _load_chat(opened: ExitStack, settings: Settings, chat_model: Any, group: str, memory: Any, user: str | None,
               thread_id: str) -> tuple[Any, Any, int]:
    """The compiled chat graph, the turns' context and how many messages the thread already holds."""
    from mikey.agents.chat import build_chat_graph, open_checkpointer, thread_history
    from mikey.agents.state import ChatContext
    from mikey.market.feeds import open_feed
    from mikey.market.store import open_existing_store

    news = opened.enter_context(_closing(open_existing_store(settings)))
    checkpointer = opened.enter_context(open_checkpointer(settings))
    context = ChatContext(settings=settings, feed=open_feed(settings), chat_model=chat_model, group=group,
                          memory=memory, news=news, user_id=user)
    graph = build_chat_graph(checkpointer)
    return graph, context, len(thread_history(graph, thread_id))


def _close_when_loaded(loading: Future[Any], opened: ExitStack) -> None:
    """Close what the loader opened, once it is done (it may still be loading when a chat ends at once)."""
    loading.exception()
    opened.close()


def _ready(loading: Future[tuple[Any, Any, int]], memory: Any) -> tuple[Any, Any, int]:
    """What ``_load_chat`` returns, once the memory is open too; what failed in either ends the chat with its error."""
    loaded = loading.result()
    if memory is not None:
        memory.ready()
    return loaded


def _continuing(console: Any, thread: str | None, earlier: int) -> None:
    if thread and earlier:
        console.print(f"[dim]continuing thread {thread} ({earlier} earlier messages)[/dim]")


def _warm_local(settings: Settings, chain: list[str]) -> None:
    """Start the local model's worker process now, when the chain may ask it: it loads while the rest of MIKEY does."""
    if "local" in chain:
        from mikey.router.local import warm

        warm(settings)


def _turn(console: Any, graph: Any, context: Any, message: str, thread_id: str, stream: bool) -> None:
    """One turn: streamed words (grounded sentence by sentence) then the card, or the whole answer at once."""
    from mikey.agents.chat import Reset, run_turn, stream_turn
    from mikey.cli_render import render_answer

    if not stream:
        render_answer(console, run_turn(graph, context, message, thread_id))
        return
    for piece in stream_turn(graph, context, message, thread_id):
        if isinstance(piece, str):
            console.out(piece, end="", highlight=False)
        elif isinstance(piece, Reset):  # the words above are withdrawn; the offline writer's follow
            console.out("")
            console.print("[yellow]^ withdrawn: the model stopped mid-answer.[/yellow] From the facts:")
        else:
            console.out("")
            render_answer(console, piece, text_shown=True)


@contextmanager
def _closing(resource: Any) -> Iterator[None]:
    try:
        yield
    finally:
        if resource is not None:
            resource.close()


@app.command()
def history(thread: Annotated[str, typer.Option("--thread", "-t", help="Conversation to show.")]) -> None:
    """Show the messages stored for a conversation thread."""
    from rich.console import Console

    from mikey.agents.chat import build_chat_graph, open_checkpointer, thread_history

    console = Console()
    with open_checkpointer(_settings()) as checkpointer:
        turns = thread_history(build_chat_graph(checkpointer), thread)
    if not turns:
        raise InvalidInput(f"no conversation stored for thread {thread!r}")
    for turn in turns:
        who = "you" if turn["role"] == "user" else f"mikey ({turn['group']})"
        console.print(f"[bold]{who}>[/bold] {turn['content']}", highlight=False)


@app.command()
def models(
    live: Annotated[bool, typer.Option("--live", help="Also show cooldowns (shared between processes via Redis).")]
    = False,
) -> None:
    """List the model groups and their deployments: usable or not, why not, and the chain of each role."""
    from rich.console import Console
    from rich.table import Table

    from mikey.router.groups import model_groups, role_chain

    settings = _settings()
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


@app.command()
def usage() -> None:
    """Model calls, tokens and cost by day, group and role, from the ledger."""
    from rich.console import Console
    from rich.table import Table

    from mikey.router.ledger import Ledger

    settings = _settings()
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


def _parse_date(text: str, option: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise InvalidInput(f"{option} must be a date like 2023-08-29, got {text!r}") from exc


def _utc_day(text: str, option: str) -> datetime:
    """The start (00:00 UTC) of the day ``text`` names: how bars are stamped."""
    return datetime.combine(_parse_date(text, option), time(0), tzinfo=UTC)


def main() -> None:
    """Entry point: run the app, turning MIKEY's errors into one line on stderr."""
    try:
        app()
    except MikeyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    except Exception as exc:  # a bug, not a user error: still one line unless debugging
        if os.environ.get("MIKEY_DEBUG"):
            raise
        print(f"internal error: {type(exc).__name__}: {exc} (set MIKEY_DEBUG=1 for the traceback)", file=sys.stderr)
        sys.exit(2)


_register_subcommands()

if __name__ == "__main__":
    main()
