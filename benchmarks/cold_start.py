"""How fast does a cold ``mikey chat`` answer, next to a bare ``python -c "import litellm"``? Ratios from one run.

Usage: python benchmarks/cold_start.py [--runs N]

Each run starts cold processes, interleaved so that machine noise hits them alike, and reports medians:

- ``import litellm``: the bare import (offline price map), the yardstick;
- one-shot: ``mikey chat --no-stream "How is SOL doing?"`` on the defaults (local model, memory on): the time until
  the answer (its "Written by" line) is shown, and until the process has exited (the turn's memory written);
- prompt: ``mikey chat`` with no message: the time until the ``you>`` prompt is shown.

Every mikey run gets a fresh MIKEY_HOME, copied from one prepared by a first chat, so that it measures a cold process
and not a first-ever install. After every one-shot run, the home's Chroma store must hold the turn (stored, or its
copy refreshed, while the process ran): it is remembered before the process exits.

Targets (issue 11): one-shot answer <= 1.5x the bare import; prompt < 1 s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
QUESTION = "How is SOL doing?"


def environment(home: Path | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIKEY_")
           and k not in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY")}
    env.update(LITELLM_LOCAL_MODEL_COST_MAP="True", COLUMNS="200")  # the bare import must not try the network either
    if home is not None:
        env["MIKEY_HOME"] = str(home)
    return env


def bare_litellm() -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import litellm"], check=True, capture_output=True, env=environment(None))
    return time.perf_counter() - start


def until_line(args: list[str], home: Path, marker: str, *, then_send: str | None = None) -> tuple[float, float, str]:
    """Start ``mikey ARGS``; seconds until a stdout line contains ``marker``, seconds until exit, and the output.

    With ``then_send``, that text is written to stdin once the marker is seen (e.g. "exit" after the prompt).
    """
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "mikey", *args], cwd=REPO, env=environment(home), text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    seen = threading.Event()
    marked: list[float] = []
    out: list[str] = []

    def read() -> None:
        buffer = ""
        while piece := proc.stdout.read(1):  # the prompt ends without a newline: read characters
            out.append(piece)
            buffer = (buffer + piece)[-200:]
            if not marked and marker in buffer:
                marked.append(time.perf_counter() - start)
                seen.set()

    reader = threading.Thread(target=read)
    reader.start()
    if then_send is not None:
        if not seen.wait(timeout=120):
            proc.kill()
        else:
            proc.stdin.write(then_send)
            proc.stdin.flush()
    proc.stdin.close()
    stderr = proc.stderr.read()
    code = proc.wait(timeout=300)
    total = time.perf_counter() - start
    reader.join()
    text = "".join(out)
    if code != 0 or not marked:
        raise SystemExit(f"mikey {' '.join(args)} failed (exit {code}):\n{text[-2000:]}\n{stderr[-2000:]}")
    return marked[0], total, text


def last_stored(home: Path) -> float:
    """The latest ``stored_at`` in the home's Chroma store: a turn stores its summary, or refreshes the copy there."""
    with sqlite3.connect(home / "chroma" / "chroma.sqlite3") as conn:
        return conn.execute("SELECT max(float_value) FROM embedding_metadata WHERE key = 'stored_at'").fetchone()[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    runs = parser.parse_args().runs
    with tempfile.TemporaryDirectory(prefix="mikey-cold-start-") as scratch:
        prepared = Path(scratch) / "prepared"
        until_line(["chat", "--no-stream", QUESTION], prepared, "Written by")  # first-ever install of a home
        bare_litellm()  # warm the OS file cache and the bytecode alike for every command
        until_line(["chat"], prepared, "you>", then_send="exit\n")
        bare, answered, exited, prompted = [], [], [], []
        for i in range(runs):
            bare.append(bare_litellm())
            home = Path(scratch) / f"run{i}"
            shutil.copytree(prepared, home)
            started = time.time()
            answer, total, text = until_line(["chat", "--no-stream", QUESTION], home, "Written by")
            if "Written by local" not in text:
                print(f"note: run {i} was not answered by the local model:\n{text[-600:]}")
            if last_stored(home) < started:
                raise SystemExit(f"run {i}: the turn was not remembered before the process exited")
            answered.append(answer)
            exited.append(total)
            shutil.rmtree(home)
            shutil.copytree(prepared, home)
            prompted.append(until_line(["chat"], home, "you>", then_send="exit\n")[0])
            shutil.rmtree(home)
    b, a, e, p = (statistics.median(x) for x in (bare, answered, exited, prompted))
    print(f"runs={runs} (medians; min-max in brackets)")
    print(f"python -c 'import litellm'      {b:6.2f} s  [{min(bare):.2f}-{max(bare):.2f}]")
    print(f"one-shot chat, answer shown     {a:6.2f} s  [{min(answered):.2f}-{max(answered):.2f}]  {a / b:.2f}x")
    print(f"one-shot chat, process exited   {e:6.2f} s  [{min(exited):.2f}-{max(exited):.2f}]  {e / b:.2f}x "
          "(memory written)")
    print(f"interactive prompt shown        {p:6.2f} s  [{min(prompted):.2f}-{max(prompted):.2f}]  {p / b:.2f}x")
    print(f"target one-shot answer <= 1.5x import litellm: {'met' if a / b <= 1.5 else 'MISSED'} ({a / b:.2f}x)")
    print(f"target prompt < 1 s: {'met' if p < 1.0 else 'MISSED'} ({p:.2f} s)")


if __name__ == "__main__":
    main()
