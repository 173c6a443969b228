"""Throughput and latency of ``POST /v1/risk/assess`` next to a constant endpoint in one server (issue 6's numbers).

Usage: python benchmarks/risk_api.py [--n 4000] [--runs 5] [--clients 32]

Server: uvicorn, one worker, in a subprocess, serving ``create_app`` over the bundled replay data (the risk figures
rest on the last 365 daily bars) plus ``POST /bench/constant``, which takes the same request body and returns a
constant without parsing it. It is set up as ``mikey serve`` sets it up (heap frozen after start-up).

Client: this process, kept light (no pandas, no engine). ``--clients`` concurrent clients, each an
``httpx.AsyncClient`` holding one keep-alive connection, send ``--n`` requests per run between them; the two
endpoints alternate run by run, the order flipping each round, so machine noise hits both alike. With two or more
CPUs, server and client are pinned to different ones. Latency is what a client sees (its own queueing included);
"in app" is the time inside the ASGI app, measured by a middleware of the benchmark server.

Targets: risk throughput >= 40% of the constant endpoint's; risk p99 < 25 ms. Figures are medians over the runs.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

POSITION = {"market": "SOL", "side": "long", "size": 100, "collateral": 250}  # about 8.7x at the last close
CONSTANT_PATH, RISK_PATH = "/bench/constant", "/v1/risk/assess"


def percentile(xs: list[float], q: float) -> float:
    """The ``q`` quantile of ``xs`` in milliseconds (nearest rank)."""
    ordered = sorted(xs)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


# Server side -------------------------------------------------------------------------------------------------------

def serve(port: int, home: str) -> None:
    """The product app plus the benchmark's constant endpoint, timing middleware and engine probe; one worker."""
    import uvicorn
    from fastapi import Depends

    from mikey.api.app import create_app, get_risk_service
    from mikey.settings import Settings

    in_app: dict[str, list[float]] = {CONSTANT_PATH: [], RISK_PATH: []}
    app = create_app(Settings(home=Path(home), memory_enabled=False, cache_enabled=False))

    @app.post(CONSTANT_PATH)
    async def constant() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/bench/in-app")
    async def in_app_times() -> dict[str, list[float]]:
        """p50 and p99 (ms) of the time inside the app per endpoint since the last call; then forget them."""
        out = {path: [percentile(xs, 0.5), percentile(xs, 0.99)] for path, xs in in_app.items() if xs}
        for xs in in_app.values():
            xs.clear()
        return out

    @app.get("/bench/engine")
    async def engine(risk: Any = Depends(get_risk_service)) -> dict[str, float]:  # noqa: B008
        """Median microseconds of one engine call, in this process, on the benchmark's position (no HTTP)."""
        from mikey.domain import PositionInput

        position = PositionInput(**POSITION)
        times = []
        for _ in range(2000):
            t = time.perf_counter()
            await risk.assess(position)
            times.append(time.perf_counter() - t)
        return {"engine_us": statistics.median(times) * 1e6}

    class Timing:
        def __init__(self, app: Any) -> None:
            self.app = app

        async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
            t = time.perf_counter()
            await self.app(scope, receive, send)
            if scope["type"] == "http" and scope["path"] in in_app:
                in_app[scope["path"]].append(time.perf_counter() - t)

    app.add_middleware(Timing)
    gc.collect()
    gc.freeze()  # as `mikey serve` does
    uvicorn.run(app, host="127.0.0.1", port=port, workers=1, log_level="warning", access_log=False)


# Client side -------------------------------------------------------------------------------------------------------

async def drive(clients: list[httpx.AsyncClient], path: str, body: bytes, n: int) -> tuple[float, list[float]]:
    """``n`` requests to ``path`` from all clients at once; (requests per second, latencies in seconds)."""
    latencies: list[float] = []
    left = n

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal left
        request = client.build_request("POST", path, content=body, headers={"content-type": "application/json"})
        while left > 0:
            left -= 1
            t = time.perf_counter()
            resp = await client.send(request)
            latencies.append(time.perf_counter() - t)
            if resp.status_code != 200:
                raise RuntimeError(f"{path}: HTTP {resp.status_code}: {resp.text[:200]}")

    start = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in clients))
    return n / (time.perf_counter() - start), latencies


async def bench(base: str, n: int, runs: int, concurrency: int) -> None:
    body = json.dumps(POSITION).encode()
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    clients = [httpx.AsyncClient(base_url=base, limits=limits, timeout=30) for _ in range(concurrency)]
    control = clients[0]
    try:
        health = (await control.get("/healthz")).json()
        sol = health["markets"]["SOL"]
        engine_us = (await control.get("/bench/engine", timeout=120)).json()["engine_us"]
        print(f"server: uvicorn, 1 worker, feed {health['feed']}, SOL history {sol['bars']} daily bars to "
              f"{sol['as_of'][:10]}; engine alone {engine_us:.0f} us per assessment (in the server process)")
        print(f"client: {concurrency} httpx.AsyncClient, one keep-alive connection each; {n} requests per run")
        for path in (CONSTANT_PATH, RISK_PATH):  # warm: connections, first-call paths
            await drive(clients, path, body, max(500, n // 5))
        await control.get("/bench/in-app")
        gc.collect()
        gc.freeze()  # the load generator's own collections must not show up as server latency
        rows: dict[str, list[tuple[float, ...]]] = {CONSTANT_PATH: [], RISK_PATH: []}
        for run in range(runs):
            order = (CONSTANT_PATH, RISK_PATH) if run % 2 == 0 else (RISK_PATH, CONSTANT_PATH)
            for path in order:
                rps, lat = await drive(clients, path, body, n)
                app_p50, app_p99 = (await control.get("/bench/in-app")).json()[path]
                rows[path].append((rps, percentile(lat, 0.50), percentile(lat, 0.99), app_p50, app_p99))
            c, r = rows[CONSTANT_PATH][-1], rows[RISK_PATH][-1]
            print(f"run {run + 1}: constant {c[0]:5.0f} req/s p50 {c[1]:5.2f} p99 {c[2]:5.2f} ms | risk {r[0]:5.0f} "
                  f"req/s p50 {r[1]:5.2f} p99 {r[2]:5.2f} ms (in app p50 {r[3]:.2f} p99 {r[4]:.2f}) | "
                  f"ratio {r[0] / c[0]:.0%}")
    finally:
        for client in clients:
            await client.aclose()
    med = {path: [statistics.median(row[i] for row in table) for i in range(5)] for path, table in rows.items()}
    ratio = statistics.median(r[0] / c[0] for r, c in zip(rows[RISK_PATH], rows[CONSTANT_PATH], strict=True))
    const, risk = med[CONSTANT_PATH], med[RISK_PATH]
    print(f"median of {runs} runs ({concurrency} clients):")
    for name, m in (("constant endpoint", const), ("POST /v1/risk/assess", risk)):
        print(f"  {name:21s} {m[0]:6.0f} req/s   p50 {m[1]:5.2f} ms   p99 {m[2]:5.2f} ms   "
              f"(in app: p50 {m[3]:.3f} ms, p99 {m[4]:.3f} ms)")
    print(f"  throughput ratio {ratio:.0%} (target >= 40%): {'PASS' if ratio >= 0.40 else 'FAIL'}")
    print(f"  risk p99 {risk[2]:.2f} ms (target < 25 ms): {'PASS' if risk[2] < 25 else 'FAIL'}")


def pin(cpu: int) -> None:
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {cpu})


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=4000, help="requests per run and endpoint")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)  # internal: run the server on this port
    parser.add_argument("--home", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        pin(0)
        serve(args.serve, args.home)
        return
    pin(1)
    port = free_port()
    with tempfile.TemporaryDirectory() as home:
        server = subprocess.Popen([sys.executable, __file__, "--serve", str(port), "--home", home])
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit("the server did not start") from None
                    time.sleep(0.1)
            try:
                import uvloop
            except ImportError:  # the standard loop works too, with a slower client
                asyncio.run(bench(f"http://127.0.0.1:{port}", args.n, args.runs, args.clients))
            else:
                uvloop.run(bench(f"http://127.0.0.1:{port}", args.n, args.runs, args.clients))
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
