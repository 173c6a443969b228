"""The eval matrix's throughput and its cache: 600 calls (100 cases x 3 groups x 2 prompt versions) against fake
OpenAI, Anthropic and Gemini servers on 127.0.0.1 that answer in 100 ms, at concurrency 20.

Prints the wall time against the ideal (600 x 0.1 s / 20 = 3 s; target ratio <= 1.3), then the same run again,
answered from the eval cache (target: at least 20x faster). Medians over --runs repetitions, each in a fresh home.
The fake servers run in a process of their own, as real providers are not in MIKEY's process; for context, the same
600 calls are also made straight through the router at the same concurrency, with no eval runner around them.

    .venv/bin/python benchmarks/eval_matrix.py [--runs 3]
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mikey.evals.runner import EvalRunner  # noqa: E402
from mikey.evals.suite import EvalCase, ScorerSpec, Suite, TargetSpec  # noqa: E402
from mikey.market.replay import ReplayFeed  # noqa: E402
from mikey.router.chat_model import RouterChatModel  # noqa: E402
from mikey.router.ledger import Ledger  # noqa: E402
from mikey.settings import Settings  # noqa: E402

CASES, LATENCY, CONCURRENCY = 100, 0.1, 20
WORKERS = 1
GROUPS = ["gpt-4", "claude", "gemini"]


def suite() -> Suite:
    cases = [EvalCase(id=f"h{i:03d}", input={"headline": f"Headline number {i}: SOL rallies after upgrade"},
                      expected="positive") for i in range(CASES)]
    return Suite(name="bench", target=TargetSpec(kind="prompt", prompt="eval/sentiment", versions=[1, 2]),
                 groups=GROUPS, cases=cases, scorers=[ScorerSpec(type="exact", normalize=True,
                                                                     labels=["positive", "negative", "neutral"])])


def serve(bases: multiprocessing.Queue, stop: multiprocessing.Event) -> None:  # type: ignore[type-arg]
    """The three fake providers, answering in LATENCY, in this (child) process until ``stop``."""
    from tests.fakes.provider_server import FakeProviderServer, Reply

    servers = {f: FakeProviderServer(f, Reply("positive", delay=LATENCY)).start()
               for f in ("openai", "anthropic", "gemini")}
    bases.put({f: s.api_base for f, s in servers.items()})
    stop.wait()
    for server in servers.values():
        server.stop()


def build(bases: dict[str, str]) -> tuple[Settings, Ledger, RouterChatModel]:
    home = Path(tempfile.mkdtemp(prefix="mikey-evalbench-"))
    settings = Settings(home=home, openai_api_key="sk-bench", openai_api_base=bases["openai"],
                        anthropic_api_key="ant-bench", anthropic_api_base=bases["anthropic"],
                        gemini_api_key="gem-bench", gemini_api_base=bases["gemini"],
                        cache_enabled=False, memory_enabled=False, num_retries=0)
    ledger = Ledger(settings.ledger_db)
    model = RouterChatModel(settings, ledger=ledger)
    _ = model.router  # litellm's import and the router's build are start-up, not the matrix
    return settings, ledger, model


def one(bases: dict[str, str]) -> tuple[float, float, int, int]:
    settings, ledger, model = build(bases)
    timings = []
    for _ in range(2):
        runner = EvalRunner(settings, [suite()], chat_model=model, ledger=ledger, feed=ReplayFeed(),
                            concurrency=CONCURRENCY, progress=False, workers=WORKERS)
        started = time.perf_counter()
        records = runner.run()
        timings.append(time.perf_counter() - started)
        assert len(records) == CASES * len(GROUPS) * 2, len(records)
        assert all(r.error is None for r in records), next(r.error for r in records if r.error)
    calls = len(ledger.calls())
    model.close()
    ledger.close()
    return timings[0], timings[1], calls, sum(r.cached for r in records)


def bare(bases: dict[str, str]) -> float:
    """The same 600 calls straight through the router (no eval runner), at the same concurrency."""
    _, ledger, model = build(bases)
    messages = [{"role": "user", "content": "Headline: SOL rallies after upgrade"}]

    def call(i: int) -> None:
        model.complete(messages, role="default", group=GROUPS[i % 3], only=True, thread_id=f"bare-{i}")

    started = time.perf_counter()
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        list(pool.map(call, range(CASES * len(GROUPS) * 2)))
    elapsed = time.perf_counter() - started
    model.close()
    ledger.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1, help="eval worker processes (the concurrency is shared)")
    args = parser.parse_args()
    runs = args.runs
    global WORKERS
    WORKERS = args.workers
    context = multiprocessing.get_context("spawn")
    queue, stop = context.Queue(), context.Event()
    child = context.Process(target=serve, args=(queue, stop), daemon=True)
    child.start()
    try:
        bases = queue.get(timeout=60)
        results = [one(bases) for _ in range(runs)]
        direct = statistics.median(bare(bases) for _ in range(runs))
    finally:
        stop.set()
        child.join(timeout=10)
    ideal = CASES * len(GROUPS) * 2 * LATENCY / CONCURRENCY
    cold = statistics.median(r[0] for r in results)
    warm = statistics.median(r[1] for r in results)
    print(f"eval matrix: {CASES} cases x {len(GROUPS)} groups x 2 prompt versions = {CASES * len(GROUPS) * 2} calls, "
          f"{LATENCY * 1000:.0f} ms each, concurrency {CONCURRENCY} over {WORKERS} worker process(es); medians of "
          f"{runs} runs")
    print(f"  first run: {cold:.2f} s against the ideal {ideal:.2f} s -> ratio {cold / ideal:.2f} (target <= 1.3); "
          f"provider calls {results[0][2]} (all in the first run)")
    print(f"  the same calls through the router alone (no eval runner): {direct:.2f} s -> ratio {direct / ideal:.2f}")
    print(f"  cached re-run: {warm:.3f} s -> {cold / warm:.1f}x faster (target >= 20x); samples from the cache "
          f"{results[0][3]}, no provider call")


if __name__ == "__main__":
    main()
