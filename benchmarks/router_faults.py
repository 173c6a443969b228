"""Router overhead, failover and cooldown costs against fake provider servers on 127.0.0.1 (issue 3's numbers).

Usage: python benchmarks/router_faults.py [--n 200]
Every figure is measured in this one run, with the compared calls interleaved so machine noise hits both alike.
Targets: Router p50 / direct p50 <= 1.10; failover on refused connection <= secondary alone + 50 ms (p50);
hang answered within timeout + 100 ms; after cooldown, added latency <= 5 ms (p50).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from mikey.router.chat_model import RouterChatModel
from mikey.router.providers import import_litellm
from mikey.settings import Settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the fake provider servers are test code: tests/fakes/
from tests.fakes.loopback import free_port  # noqa: E402
from tests.fakes.provider_server import FakeProviderServer, Fault, Reply  # noqa: E402

MESSAGES = [{"role": "user", "content": "How is SOL doing?"}]


def p50(xs: list[float]) -> float:
    return statistics.median(xs) * 1000


def p95(xs: list[float]) -> float:
    return sorted(xs)[int(0.95 * (len(xs) - 1))] * 1000


def dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}/v1"


def settings(home: Path, openai: str, anthropic: str, **extra: object) -> Settings:
    return Settings(home=home, openai_api_key="sk-bench", openai_api_base=openai, anthropic_api_key="ant-bench",
                    anthropic_api_base=anthropic, local_model_path=home / "none.gguf", cache_enabled=False,
                    memory_enabled=False, num_retries=0, **extra)


async def overhead(server: FakeProviderServer, n: int) -> tuple[float, float]:
    """p50 of litellm.Router.acompletion vs direct litellm.acompletion, same server, interleaved."""
    litellm = import_litellm()
    from litellm import Router

    params = {"model": "openai/gpt-4o", "api_base": server.api_base, "api_key": "sk-bench"}
    router = Router(model_list=[{"model_name": "gpt-4", "litellm_params": params}], num_retries=0)
    routed, direct = [], []
    for _ in range(10):  # warm both paths: imports, HTTP clients
        await router.acompletion(model="gpt-4", messages=MESSAGES)
        await litellm.acompletion(messages=MESSAGES, **params)
    for _ in range(n):
        t = time.perf_counter()
        await router.acompletion(model="gpt-4", messages=MESSAGES)
        routed.append(time.perf_counter() - t)
        t = time.perf_counter()
        await litellm.acompletion(messages=MESSAGES, **params)
        direct.append(time.perf_counter() - t)
    return p50(routed), p50(direct)


def timed(cm: RouterChatModel, n: int, **kwargs: object) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        cm.complete(MESSAGES, role="analyze", **kwargs)
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=200)
    n = parser.parse_args().n
    openai, anthropic = FakeProviderServer("openai").start(), FakeProviderServer("anthropic").start()
    home = Path(tempfile.mkdtemp(prefix="mikey-bench-"))
    try:
        routed, direct = asyncio.run(overhead(openai, n))
        print(f"router overhead: Router p50 {routed:.2f} ms vs direct litellm.acompletion p50 {direct:.2f} ms "
              f"-> ratio {routed / direct:.3f} (target <= 1.10; instant fake server)")
        openai.default = Reply("ok", delay=0.05)  # context: the same overhead against a 50 ms provider
        routed50, direct50 = asyncio.run(overhead(openai, max(20, n // 5)))
        openai.default = Reply("ok")
        print(f"  same with 50 ms provider latency: {routed50:.2f} vs {direct50:.2f} ms -> ratio "
              f"{routed50 / direct50:.3f}; absolute router cost {routed - direct:.2f} ms per call")

        # Failover on refused connections, with cooldowns off so every call pays the failed attempt.
        refused = RouterChatModel(settings(home, dead_url(), anthropic.api_base, cooldown_seconds=0))
        alone = RouterChatModel(settings(home, openai.api_base, anthropic.api_base))
        timed(refused, 5)
        timed(alone, 5, group="claude", only=True)
        failover, secondary = [], []
        for _ in range(n // 2):
            failover += timed(refused, 1)
            secondary += timed(alone, 1, group="claude", only=True)
        print(f"failover (primary refuses): p50 {p50(failover):.2f} ms vs secondary alone p50 {p50(secondary):.2f} ms "
              f"-> +{p50(failover) - p50(secondary):.2f} ms (target <= +50 ms)")

        # Primary hangs: answered after the timeout by the secondary.
        timeout = 0.5
        hung = RouterChatModel(settings(home, openai.api_base, anthropic.api_base, request_timeout=timeout,
                                        cooldown_seconds=0))
        openai.default = Fault.hang()
        hang_times = timed(hung, 7)
        openai.default = Reply("ok")
        print(f"primary hangs (timeout {timeout * 1000:.0f} ms): p50 {p50(hang_times):.1f} ms, max "
              f"{max(hang_times) * 1000:.1f} ms -> p50 over timeout +{p50(hang_times) - timeout * 1000:.1f} ms "
              f"(target <= +100 ms)")

        # After cooldown: the dead deployment is skipped.
        cooled = RouterChatModel(settings(home, dead_url(), anthropic.api_base, allowed_fails=0, cooldown_seconds=600))
        timed(cooled, 3)  # the first failure puts gpt-4#0 in cooldown
        assert "gpt-4#0" in cooled.cooldowns(), "the dead deployment did not cool down"
        skipped, secondary = [], []
        for _ in range(n // 2):
            skipped += timed(cooled, 1)
            secondary += timed(alone, 1, group="claude", only=True)
        print(f"after cooldown: p50 {p50(skipped):.2f} ms vs secondary alone p50 {p50(secondary):.2f} ms "
              f"-> +{p50(skipped) - p50(secondary):.2f} ms (target <= +5 ms); p95 {p95(skipped):.2f} vs "
              f"{p95(secondary):.2f} ms")
    finally:
        openai.stop()
        anthropic.stop()


if __name__ == "__main__":
    main()
