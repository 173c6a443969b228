"""How fast does ``mikey --help`` return, next to a bare Python start? Prints medians and their ratio from one run.

Usage: python benchmarks/cli_startup.py [--runs N]
The target (issue 2) is "well under a second"; both commands run interleaved so machine noise hits them alike.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    runs = parser.parse_args().runs
    help_cmd = [sys.executable, "-m", "mikey", "--help"]
    bare_cmd = [sys.executable, "-c", "pass"]
    timed(help_cmd)  # warm the OS file cache and bytecode
    help_times, bare_times = [], []
    for _ in range(runs):
        help_times.append(timed(help_cmd))
        bare_times.append(timed(bare_cmd))
    h, b = statistics.median(help_times), statistics.median(bare_times)
    print(f"runs={runs}")
    spread = f"min {min(help_times) * 1000:.1f}, max {max(help_times) * 1000:.1f}"
    print(f"mikey --help  median {h * 1000:7.1f} ms  ({spread})")
    print(f"python -c ''  median {b * 1000:7.1f} ms")
    print(f"ratio help/bare-python {h / b:.2f}x; help minus interpreter start {(h - b) * 1000:.1f} ms")
    print(f"target < 1000 ms: {'met' if h < 1.0 else 'MISSED'}")


if __name__ == "__main__":
    main()
