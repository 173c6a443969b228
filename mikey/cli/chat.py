"""``mikey chat``: one question or an interactive session on a conversation thread, streamed to the terminal.

The slow parts (the local model's worker, litellm's import, the memory, the chat graph) load in background threads
while the prompt is shown; they are imported inside the functions, so ``mikey --help`` stays light.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from mikey.cli.common import load_settings, parse_date
from mikey.errors import InvalidInput, MikeyError

if TYPE_CHECKING:
    from concurrent.futures import Future

    from mikey.runtime import Runtime

T = TypeVar("T")

EXIT_WORDS = {"exit", "quit", ":q", "bye"}


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
    from mikey.runtime import open_runtime

    if message is not None and not message.strip():
        raise InvalidInput("the message is empty; ask something like: mikey chat \"How is SOL doing?\"")
    if user is not None and not user.strip():
        raise InvalidInput("--user is empty; give a name, e.g. --user alice")
    clock = parse_date(as_of, "--as-of") if as_of else None
    settings = load_settings(as_of=clock)
    # The runtime checks the group (a clear error now for an unknown or unusable one) and starts the local model's
    # worker process. The other slow parts load in parallel and off the prompt's path: the router (litellm's
    # import), the memory (Chroma and the embedder) and the chat graph each in a thread of their own. A turn waits
    # only for what it uses, and the memory's writes run after the answer is shown (closing the memory waits for
    # them).
    memory = open_in_background(settings)
    try:
        runtime = open_runtime(settings, group=model, memory=memory)
    except BaseException:
        if memory is not None:
            memory.close()
        raise
    chain = runtime.chat_model.chain("analyze", runtime.group)
    _build_router_in_background(runtime.chat_model)
    thread_id = thread or uuid.uuid4().hex[:8]
    from rich.console import Console

    console = Console()
    with ExitStack() as resources:
        resources.callback(runtime.close)
        loading = _in_background("mikey-chat-graph", _load_chat, runtime, user, thread_id)
        resources.callback(lambda: loading.exception())  # the loader finishes before the runtime closes
        if message is not None:
            graph, context, earlier = _ready(loading, memory)
            _continuing(console, thread, earlier)
            _trading_notice(console, runtime)
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
                _trading_notice(console, runtime)
                first = False
            try:
                if memory is not None:
                    memory.flush()  # the previous turn's writes: one that failed is reported here
                _turn(console, graph, context, line, thread_id, stream)
            except MikeyError as exc:  # one bad turn does not end the session
                console.print(f"[red]error:[/red] {exc}")


def _build_router_in_background(chat_model: Any) -> None:
    """Build the router now (litellm's import takes seconds), so that the first model call finds it ready."""

    def run() -> None:
        try:
            _ = chat_model.router
        except Exception:  # the first model call builds it again, and reports the error to the user there
            pass

    threading.Thread(target=run, name="mikey-build-router", daemon=True).start()


def _in_background(name: str, fn: Callable[..., T], *args: Any) -> Future[T]:
    """``fn(*args)`` in a thread of its own (not a daemon: it finishes before the process exits)."""
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
    future = pool.submit(fn, *args)
    pool.shutdown(wait=False)
    return future


def _load_chat(runtime: Runtime, user: str | None, thread_id: str) -> tuple[Any, Any, int]:
    """The compiled chat graph, the turns' context and how many messages the thread already holds."""
    from mikey.agents.chat import thread_history

    graph = runtime.chat_graph()
    return graph, runtime.chat_context(user_id=user), len(thread_history(graph, thread_id))


def _ready(loading: Future[tuple[Any, Any, int]], memory: Any) -> tuple[Any, Any, int]:
    """What ``_load_chat`` returns, once the memory is open too; what failed in either ends the chat with its error."""
    loaded = loading.result()
    if memory is not None:
        memory.ready()
    return loaded


def _trading_notice(console: Any, runtime: Runtime) -> None:
    if runtime.executor_error:
        console.print(f"[yellow]{runtime.executor_error}[/yellow]", highlight=False)


def _continuing(console: Any, thread: str | None, earlier: int) -> None:
    if thread and earlier:
        console.print(f"[dim]continuing thread {thread} ({earlier} earlier messages)[/dim]")


def _turn(console: Any, graph: Any, context: Any, message: str, thread_id: str, stream: bool) -> None:
    """One turn: streamed words (grounded sentence by sentence) then the card, or the whole answer at once."""
    from mikey.agents.chat import Reset, run_turn, stream_turn
    from mikey.cli.render import render_answer

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
