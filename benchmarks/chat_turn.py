"""The chat graph's own cost with a zero-latency scripted model: latency, turns per second, prompt tokens per answer.

Usage: python benchmarks/chat_turn.py [--turns 200] [--warmup 10] [--workers 2] [--per-worker N] [--runs 3]

The model is a ``FunctionModel`` swapped into the ``local`` group behind the real LiteLLM Router, as in
``tests/agents/test_chat.py``. It answers instantly: the ``chat/understand`` prompt with a fixed ``ModelIntent`` JSON,
the ``chat/analyze`` prompt with one sentence copying the ``price`` and ``rsi_14`` lines of the facts block (so
grounding keeps the draft). Whatever time a turn takes is MIKEY's: graph, SQLite checkpointer, ledger, Router,
``gather`` (quote, indicators and the full analysis over the replay history) and grounding. The set-up is the CLI's
(``mikey chat``): ``RouterChatModel`` with a ``Ledger``, ``open_checkpointer``, ``ReplayFeed``; memory and the response
cache are off. Every turn is "How is SOL doing?" on a new thread, so history never grows.

Figures, all from this one run:

1. latency of one turn through ``run_turn``: p50 and p99 over ``--turns`` turns, after ``--warmup`` turns;
2. turns per second: ``--workers`` processes (spawned and warmed up once, each with its own graph, checkpointer in
   its own temporary home, ledger and chat model) run ``--per-worker`` turns each, started together (total turns /
   wall time), next to the first of them alone; ``--runs`` rounds, the order alternating, medians;
3. prompt tokens per answer: every call the fake received in one turn, counted with
   ``litellm.token_counter(model="gpt-4o")`` (tiktoken's o200k_base, read from the copy litellm bundles: no download);
4. the same count for a conventional tool-calling agent that sends every tool schema MIKEY's chat graph could use with
   both of its calls (see ``baseline_calls``), and the ratio MIKEY / baseline.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import re
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from mikey.agents.chat import ANALYZE_PROMPT, build_chat_graph, open_checkpointer, run_turn
from mikey.agents.prompts import load_prompt
from mikey.agents.state import ChatContext
from mikey.domain import PositionInput
from mikey.market.replay import ReplayFeed
from mikey.router import fake
from mikey.router.chat_model import RouterChatModel
from mikey.router.groups import model_groups
from mikey.router.ledger import Ledger
from mikey.router.providers import import_litellm
from mikey.settings import Settings

QUESTION = "How is SOL doing?"
UNDERSTAND_SYSTEM = "You classify messages"  # how the chat/understand prompt's system text begins
INTENT = json.dumps({"kind": "analysis", "markets": ["SOL"], "timeframe": None, "side": None, "leverage": None,
                     "collateral": None})
TOKENIZER_MODEL = "gpt-4o"
O200K_URL = "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken"  # tiktoken caches it by sha1

# The offline switches must hold before litellm is first imported (here, or in a spawned worker): the bundled price
# map instead of a fetch of the remote one. ``import_litellm`` only sets them when they are unset; a benchmark that
# must not touch the network sets them outright.
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
os.environ["LITELLM_TELEMETRY"] = "False"


def percentile(xs: list[float], q: float) -> float:
    """The ``q`` quantile of ``xs`` in milliseconds (nearest rank)."""
    ordered = sorted(xs)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


# The scripted model and one chat set-up -----------------------------------------------------------------------------

def scripted_reply(messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> str:
    """The understand prompt gets the intent JSON; the analyze prompt a sentence copying two facts."""
    if str(messages[0]["content"]).startswith(UNDERSTAND_SYSTEM):
        return INTENT
    facts = str(messages[-1]["content"])
    price = re.search(r"^price: (\S+)$", facts, re.MULTILINE)
    rsi = re.search(r"^rsi_14: (\S+)$", facts, re.MULTILINE)
    assert price and rsi, "the analyze prompt's facts block has no price or rsi_14 line"
    return f"SOL last closed at {price.group(1)} USD, with RSI(14) at {rsi.group(1)}."


@contextmanager
def chat_session(home: Path) -> Iterator[tuple[Any, ChatContext, fake.FunctionModel]]:
    """Graph, context and fake model as ``mikey chat`` builds them, with the fake as the ``local`` group.

    Provider keys and extra deployments are cleared so that nothing but the fake and the offline writer can answer,
    whatever the shell exports. The ``understand`` role is pointed at ``local`` (by default it lists only hosted
    groups), so that the fake parses the intent too and a turn makes both of its model calls.
    """
    settings = Settings(home=home, memory_enabled=False, cache_enabled=False, openai_api_key=None,
                        anthropic_api_key=None, gemini_api_key=None, local_api_base=None, deployments=[],
                        default_model=None, understand_with_model=True, checkpoint_url=None)
    settings = settings.model_copy(update={"roles": {**settings.roles, "understand": ["local"]}})
    groups = model_groups(settings)
    model = fake.FunctionModel(scripted_reply)
    groups["local"] = fake.fake_group("local", "bench", model, family="local")
    ledger = Ledger(settings.ledger_db)
    chat_model = RouterChatModel(settings, groups, ledger=ledger)
    assert chat_model.chain("analyze", "local") == ["local", "offline"], chat_model.chain("analyze", "local")
    context = ChatContext(settings=settings, feed=ReplayFeed(), chat_model=chat_model, group="local")
    try:
        with open_checkpointer(settings) as checkpointer:
            yield build_chat_graph(checkpointer), context, model
    finally:
        ledger.close()


def run_turns(graph: Any, context: ChatContext, model: fake.FunctionModel, n: int, prefix: str) -> list[float]:
    """Seconds of each of ``n`` analysis turns, each on a new thread; checks that each made exactly two model calls
    and that its draft survived grounding (outside the timed call)."""
    times = []
    for i in range(n):
        calls = len(model.calls)
        started = time.perf_counter()
        answer = run_turn(graph, context, QUESTION, f"{prefix}-{i}")
        times.append(time.perf_counter() - started)
        made = len(model.calls) - calls
        assert made == 2, f"one analysis turn made {made} model calls, not 2 (understand + analyze)"
        assert answer.group == "local" and not answer.grounding.removed, (answer.group, answer.notice)
    return times


def worker(warmup: int, inbox: Any, results: Any) -> None:
    """One worker process with its own home, graph, checkpointer, ledger and chat model. After its warm-up it runs
    each ``(tag, n)`` order from ``inbox`` as it arrives and reports (wall, CPU) seconds; ``None`` ends it."""
    import_litellm()
    with tempfile.TemporaryDirectory(prefix="mikey-bench-") as home, chat_session(Path(home)) as (graph, ctx, model):
        run_turns(graph, ctx, model, warmup, "warm")
        results.put(None)
        while (order := inbox.get()) is not None:
            tag, n = order
            wall, cpu = time.perf_counter(), time.process_time()
            run_turns(graph, ctx, model, n, tag)
            results.put((time.perf_counter() - wall, time.process_time() - cpu))


@contextmanager
def worker_pool(size: int, warmup: int) -> Iterator[Any]:
    """``size`` warmed-up worker processes; yields ``run(procs, n, tag)``: wall seconds for the first ``procs`` of
    them to run ``n`` turns each, started together, and each one's (wall, CPU) seconds."""
    spawn = multiprocessing.get_context("spawn")  # a fresh interpreter each: no litellm or sqlite state forked
    inboxes, results = [spawn.Queue() for _ in range(size)], spawn.Queue()
    procs = [spawn.Process(target=worker, args=(warmup, inbox, results), daemon=True) for inbox in inboxes]
    for proc in procs:
        proc.start()

    def run(count: int, n: int, tag: str) -> tuple[float, list[tuple[float, float]]]:
        began = time.perf_counter()
        for inbox in inboxes[:count]:
            inbox.put((tag, n))
        each = [results.get(timeout=600) for _ in range(count)]
        return time.perf_counter() - began, each

    try:
        for _ in procs:
            results.get(timeout=600)  # warmed up
        yield run
    finally:
        for inbox in inboxes:
            inbox.put(None)
        for proc in procs:
            proc.join(timeout=60)
    if any(proc.exitcode != 0 for proc in procs):
        raise SystemExit(f"a worker failed: exit codes {[proc.exitcode for proc in procs]}")


# Tokens -------------------------------------------------------------------------------------------------------------

def offline_tokenizer(litellm: Any) -> str:
    """Where tiktoken reads gpt-4o's encoding from; refuses to go on if reading it would mean a download.

    litellm's ``default_encoding`` points ``TIKTOKEN_CACHE_DIR`` at ``litellm/litellm_core_utils/tokenizers``, which
    ships the cached files of cl100k_base, p50k_base and o200k_base (named by the sha1 of their download URL).
    ``CUSTOM_TIKTOKEN_CACHE_DIR`` overrides that folder, and an empty one would make tiktoken download.
    """
    from litellm.litellm_core_utils import default_encoding  # noqa: F401  (sets TIKTOKEN_CACHE_DIR)
    from litellm.litellm_core_utils.token_counter import openai_tokenizer_encoding_name

    encoding = openai_tokenizer_encoding_name(TOKENIZER_MODEL)
    cached = Path(os.environ["TIKTOKEN_CACHE_DIR"]) / hashlib.sha1(O200K_URL.encode()).hexdigest()
    if encoding != "o200k_base" or not cached.is_file():
        raise SystemExit(f"token_counter({TOKENIZER_MODEL}) would use {encoding} from {cached.parent}, which lacks "
                         "it: tiktoken would download it (unset CUSTOM_TIKTOKEN_CACHE_DIR)")
    bundled = Path(litellm.__file__).parent / "litellm_core_utils" / "tokenizers"
    where = "litellm's bundled copy" if cached.parent.resolve() == bundled.resolve() else str(cached.parent)
    return f"tiktoken {encoding} from {where} ({cached.name[:12]}...)"


def count(litellm: Any, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> int:
    return litellm.token_counter(model=TOKENIZER_MODEL, messages=messages, tools=tools)


class SymbolArgs(BaseModel):
    symbol: str = Field(description="Market ticker: SOL, BTC or ETH (also SOL-PERP, solana, ...).")


class RecallArgs(BaseModel):
    query: str = Field(description="What to look for in earlier conversations and insights.")
    symbol: str | None = Field(None, description="Only notes about this market.")


def _without_titles(schema: Any, *, properties: bool = False) -> Any:
    """A pydantic JSON schema without its ``title`` keywords, as tool-calling frameworks send it."""
    if isinstance(schema, dict):
        return {k: _without_titles(v, properties=k == "properties") for k, v in schema.items()
                if properties or k != "title"}
    if isinstance(schema, list):
        return [_without_titles(v) for v in schema]
    return schema


def tool_schemas() -> list[dict[str, Any]]:
    """OpenAI function-calling schemas of every tool MIKEY's chat graph uses (``gather.plan`` and its helpers)."""
    tools = [
        ("get_quote", "Latest quote of a market at the feed's clock. Returns Quote.", SymbolArgs),
        ("get_indicators", "RSI, MACD, Bollinger Bands and ATR on the daily candles up to the feed's clock. "
                           "Returns IndicatorSnapshot.", SymbolArgs),
        ("analyze_market", "Full code-computed analysis of a market over its daily candles: indicators, patterns, "
                           "sentiment, signal, backtest. Returns AnalysisReport.", SymbolArgs),
        ("assess_position", "Risk of a perpetual position: liquidation price, VaR/CVaR, risk score and pre-trade "
                            "checks. Returns RiskAssessment.", PositionInput),
        ("recall_memory", "Earlier conversation summaries and insights relevant to a query. Returns list[Recall].",
         RecallArgs),
        ("get_news", "Recent news headlines about a market. Returns list[NewsItem].", SymbolArgs),
    ]
    return [{"type": "function", "function": {"name": name, "description": description,
                                              "parameters": _without_titles(args.model_json_schema())}}
            for name, description, args in tools]


def baseline_calls(feed: ReplayFeed) -> list[list[dict[str, Any]]]:
    """The two calls of a conventional agent for the question: (1) system + question; the model calls get_quote,
    get_indicators and analyze_market; (2) the same + its tool calls + the three results as JSON; it answers."""
    from mikey.tools import market as market_tools
    from mikey.tools.analysis import analyze_market

    system = load_prompt(ANALYZE_PROMPT).system.strip()
    first = [{"role": "system", "content": system}, {"role": "user", "content": QUESTION}]
    results = {"get_quote": market_tools.get_quote(feed, "SOL"),
               "get_indicators": market_tools.get_indicators(feed, "SOL"),
               "analyze_market": analyze_market(feed, "SOL")}
    calls = [{"id": f"call_{i}", "type": "function",
              "function": {"name": name, "arguments": json.dumps({"symbol": "SOL"})}}
             for i, name in enumerate(results, 1)]
    second = [*first, {"role": "assistant", "content": None, "tool_calls": calls},
              *({"role": "tool", "tool_call_id": call["id"], "content": value.model_dump_json()}
                for call, value in zip(calls, results.values(), strict=True))]
    return [first, second]


# -------------------------------------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", type=int, default=200, help="timed turns in this process")
    parser.add_argument("--warmup", type=int, default=10, help="untimed turns first, in every process")
    parser.add_argument("--workers", type=int, default=2, help="processes of the throughput run")
    parser.add_argument("--per-worker", type=int, help="turns per worker process and run (default: --turns)")
    parser.add_argument("--runs", type=int, default=3, help="throughput runs (1 process, then N, order alternating)")
    args = parser.parse_args()
    per_worker = args.per_worker or args.turns
    litellm = import_litellm()
    source = offline_tokenizer(litellm)  # before any work: a count that would need a download is refused here

    with tempfile.TemporaryDirectory(prefix="mikey-bench-") as home, chat_session(Path(home)) as (graph, ctx, model):
        run_turns(graph, ctx, model, args.warmup, "warm")
        wall = time.perf_counter()
        times = run_turns(graph, ctx, model, args.turns, "turn")
        wall = time.perf_counter() - wall
        understand, analyze = model.calls[-2:]
        assert str(understand[0]["content"]).startswith(UNDERSTAND_SYSTEM), "the turn's first call is not understand"
    print(f"one analysis turn ({QUESTION!r}, new thread each, zero-latency fake model; 2 model calls per turn, "
          "checked):")
    print(f"  p50 {percentile(times, 0.50):.1f} ms   p99 {percentile(times, 0.99):.1f} ms   mean "
          f"{statistics.fmean(times) * 1000:.1f} ms   max {max(times) * 1000:.1f} ms   ({args.turns} turns after "
          f"{args.warmup} warm-up; {args.turns / wall:.1f} turns/s back to back)")

    # Throughput: fresh processes per run, the 1-process and N-process runs alternating so that noise hits both.
    print(f"turns per second, {per_worker} turns per process and run ({os.cpu_count()} CPUs; CPU = CPU seconds of all "
          "workers per wall second):")
    rates: dict[int, list[float]] = {1: [], args.workers: []}
    with worker_pool(args.workers, args.warmup) as run_on:
        for run in range(args.runs):
            line = []
            for procs in (1, args.workers) if run % 2 == 0 else (args.workers, 1):
                wall, each = run_on(procs, per_worker, f"run{run}-{procs}")
                rates[procs].append(procs * per_worker / wall)
                line.append((procs, rates[procs][-1], sum(cpu for _, cpu in each) / wall))
            shown = " | ".join(f"{p} process{'es' if p > 1 else ''} {r:5.1f} turns/s (CPU {c:.2f})"
                               for p, r, c in sorted(line))
            print(f"  run {run + 1}: {shown} | scaling {rates[args.workers][-1] / rates[1][-1]:.2f}x")
    single, multi = statistics.median(rates[1]), statistics.median(rates[args.workers])
    scaling = statistics.median(m / s for s, m in zip(rates[1], rates[args.workers], strict=True))
    print(f"  median of {args.runs} runs: 1 process {single:.1f} turns/s, {args.workers} processes {multi:.1f} "
          f"turns/s -> {scaling:.2f}x (ideal {args.workers}x)")

    understand_tokens, analyze_tokens = count(litellm, understand), count(litellm, analyze)
    mikey = understand_tokens + analyze_tokens
    tools = tool_schemas()
    first, second = baseline_calls(ctx.feed)
    base_first, base_second = count(litellm, first, tools), count(litellm, second, tools)
    baseline = base_first + base_second
    tool_tokens = base_first - count(litellm, first)
    tools_as_text = litellm.token_counter(model=TOKENIZER_MODEL, text=json.dumps(tools))
    results_tokens = count(litellm, second) - count(litellm, first)
    assert tool_tokens > 0, "token_counter ignored the tools"
    print(f"prompt tokens per answer (litellm.token_counter(model={TOKENIZER_MODEL!r}); {source}):")
    print(f"  MIKEY:    understand {understand_tokens} + analyze {analyze_tokens} = {mikey} tokens "
          "(the messages the fake received; no tool schemas)")
    print(f"  baseline: call 1 {base_first} + call 2 {base_second} = {baseline} tokens (all {len(tools)} tool "
          "schemas in both calls)")
    print(f"    tool schemas: {tool_tokens} tokens per call as token_counter renders them (OpenAI's function "
          f"namespace; as JSON text they would be {tools_as_text}); tool calls + 3 results as JSON: {results_tokens}")
    print(f"  ratio MIKEY / baseline: {mikey / baseline:.2f} ({mikey} / {baseline})")


if __name__ == "__main__":
    main()
