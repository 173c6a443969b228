"""The ``mikey`` command line end to end, as a user runs it: real replay data, real local model, no network."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys

import numpy as np
import pytest
import talib

from tests.conftest import NETGUARD_DIR, SHARED_DATA, run_mikey

HEAVY = ("litellm", "torch", "chromadb", "transformers", "langgraph", "pandas")


def shared_sol_facts() -> dict[str, str]:
    """SOL's last close and indicators computed straight from the shared CSV with TA-Lib: the independent source."""
    import csv

    with (SHARED_DATA / "SOL-USD.daily.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    close = np.array([float(r["Close"]) for r in rows])
    high = np.array([float(r["High"]) for r in rows])
    low = np.array([float(r["Low"]) for r in rows])
    macd, signal, _ = talib.MACD(close, 12, 26, 9)
    upper, middle, lower = talib.BBANDS(close, 20, 2, 2)
    return {
        "price": rows[-1]["Close"],
        "rsi": f"{talib.RSI(close, 14)[-1]:.2f}",
        "macd": f"{macd[-1]:.4f}",
        "macd_signal": f"{signal[-1]:.4f}",
        "bb_upper": f"{upper[-1]:.4f}",
        "bb_lower": f"{lower[-1]:.4f}",
        "atr": f"{talib.ATR(high, low, close, 14)[-1]:.4f}",
    }


def test_help_imports_no_heavy_module() -> None:
    """``mikey --help`` must stay light: none of litellm, torch, chromadb, transformers (nor langgraph, pandas)."""
    code = (
        "import sys\n"
        "sys.argv = ['mikey', '--help']\n"
        "from mikey.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        f"print('LOADED', [m for m in {HEAVY!r} if m in sys.modules])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "chat" in done.stdout and "models" in done.stdout
    assert "LOADED []" in done.stdout, done.stdout[-500:]


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="shared data folder not present")
def test_one_shot_sol_answer_uses_local_model_and_exact_facts() -> None:
    """The README's promise: an answer about SOL from the replayed data, written by the local model, offline."""
    done = run_mikey("chat", "How is SOL doing?", env={"MIKEY_MEMORY_ENABLED": "false"})
    assert done.returncode == 0, done.stderr
    out = done.stdout
    expected = shared_sol_facts()
    for name, value in expected.items():
        assert value in out, f"{name} {value} missing from:\n{out}"
    assert "Written by local (mikey-local/smollm2-135m-instruct)" in out
    assert "Traceback" not in done.stderr


def test_same_thread_keeps_history_across_runs(isolated_env) -> None:
    """Two runs on one thread id: the second sees the first (a follow-up without a market resolves to SOL)."""
    env = {"MIKEY_MEMORY_ENABLED": "false", "MIKEY_DEFAULT_MODEL": "offline", "MIKEY_HOME": str(isolated_env)}
    first = run_mikey("chat", "--thread", "t1", "How is SOL doing?", env=env)
    assert first.returncode == 0, first.stderr
    second = run_mikey("chat", "--thread", "t1", "and what about its RSI?", env=env)
    assert second.returncode == 0, second.stderr
    assert "continuing thread t1 (2 earlier messages)" in second.stdout
    assert "Facts: SOL" in second.stdout
    shown = run_mikey("history", "--thread", "t1", env=env)
    assert shown.returncode == 0, shown.stderr
    assert [line.split(">")[0] for line in shown.stdout.splitlines() if ">" in line] == [
        "you", "mikey (offline)", "you", "mikey (offline)"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["chat", ""], "error: the message is empty"),
        (["chat", "  "], "error: the message is empty"),
        (["chat", "--model", "gpt-4", "How is SOL doing?"], "error: model group 'gpt-4' is not usable: "
                                                             "OPENAI_API_KEY is not set"),
        (["chat", "--model", "gpt-5", "How is SOL doing?"], "error: unknown model group 'gpt-5'"),
        (["chat", "--as-of", "yesterday", "How is SOL doing?"], "error: --as-of must be a date"),
        (["chat", "--as-of", "2019-01-01", "How is SOL doing?"], "error: no SOL data on or before 2019-01-01"),
        (["history", "--thread", "nope"], "error: no conversation stored for thread 'nope'"),
    ],
)
def test_bad_input_gets_one_line_error(args: list[str], message: str) -> None:
    done = run_mikey(*args, env={"MIKEY_MEMORY_ENABLED": "false"})
    assert done.returncode == 1
    assert done.stderr.startswith(message), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert "Traceback" not in done.stderr


def test_invalid_setting_gets_one_line_error() -> None:
    done = run_mikey("chat", "hi", env={"MIKEY_DEFAULT_MODEL": "gpt-5"})
    assert done.returncode == 1
    assert done.stderr.startswith("error: invalid setting default_model"), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_unknown_symbol_gets_clear_answer() -> None:
    done = run_mikey("chat", "How is DOGE doing?", env={"MIKEY_MEMORY_ENABLED": "false"})
    assert done.returncode == 0, done.stderr
    assert "I don't cover DOGE. Markets I cover: BTC, ETH, SOL." in done.stdout
    assert "Written by rules (no model needed)." in done.stdout


def test_unreachable_local_server_falls_back_to_offline_writer() -> None:
    """A local model server that refuses connections: the answer still comes, from the offline writer, and says so."""
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    done = run_mikey("chat", "How is SOL doing?", env={
        "MIKEY_MEMORY_ENABLED": "false", "MIKEY_LOCAL_API_BASE": f"http://127.0.0.1:{port}/v1",
        "MIKEY_REQUEST_TIMEOUT": "10", "MIKEY_NUM_RETRIES": "0"})
    assert done.returncode == 0, done.stderr
    # The notice names the group and the error class (as LiteLLM classes a refused connection), never raw text.
    assert re.search(r"The local model did not answer \(\w+Error(, HTTP \d{3})?\); offline wrote this instead\.",
                     re.sub(r"\s+", " ", done.stdout))
    assert "Written by offline (mikey-offline/facts-writer)" in done.stdout
    assert "21.780764" in done.stdout


def test_models_lists_groups_and_reasons() -> None:
    done = run_mikey("models")
    assert done.returncode == 0, done.stderr
    for group, reason in [("gpt-4", "OPENAI_API_KEY is not set"), ("claude", "ANTHROPIC_API_KEY is not set"),
                          ("gemini", "GEMINI_API_KEY is not set"), ("offline", "always available")]:
        line = next(line for line in done.stdout.splitlines() if f" {group} " in line)
        assert reason in line, line
    assert "role default: local -> offline" in done.stdout
    assert "role judge: local\n" in done.stdout  # a judge is never the offline writer


def test_models_shows_configured_key_as_usable() -> None:
    done = run_mikey("models", env={"OPENAI_API_KEY": "sk-test"})
    line = next(line for line in done.stdout.splitlines() if " gpt-4 " in line)
    assert "yes" in line and "sk-test" not in done.stdout
    json.dumps(line)  # the table is plain text


def test_usage_reports_the_ledger(isolated_env) -> None:
    env = {"MIKEY_MEMORY_ENABLED": "false", "MIKEY_DEFAULT_MODEL": "offline", "MIKEY_HOME": str(isolated_env)}
    fresh = run_mikey("usage", env=env)  # a first run: an empty report, not an error
    assert fresh.returncode == 0 and fresh.stderr == "", fresh.stderr
    assert "no model calls recorded yet" in fresh.stdout and "total cost: $0.000000 over 0 calls" in fresh.stdout
    assert not list(isolated_env.glob("ledger*"))  # reading the usage writes nothing
    assert run_mikey("chat", "How is SOL doing?", env=env).returncode == 0
    done = run_mikey("usage", env=env)
    assert done.returncode == 0, done.stderr
    row = next(line for line in done.stdout.splitlines() if " offline " in line)
    assert " analyze " in row and " 1 " in row
    assert "total cost: $0.000000 over 1 calls" in done.stdout


def test_models_live_shows_cooldown_column() -> None:
    done = run_mikey("models", "--live")
    assert done.returncode == 0, done.stderr
    assert "cooldown" in done.stdout


def test_chat_with_memory_remembers_each_turn_before_the_process_exits(isolated_env) -> None:
    """Memory on: a chat's writes run after its answer is shown, yet every one has landed when the process ends, so
    the next process reads it back. Nothing on stderr: the embedder found its ONNX export (no fallback warning)."""
    env = {"MIKEY_DEFAULT_MODEL": "offline", "MIKEY_HOME": str(isolated_env)}
    said = run_mikey("chat", "-u", "alice", "I'm a conservative trader, I mostly trade ETH", env=env)
    assert said.returncode == 0 and said.stderr == "", said.stderr
    asked = run_mikey("chat", "-u", "alice", "What's up with the market?", env=env)
    assert asked.returncode == 0 and asked.stderr == "", asked.stderr
    assert "Facts: ETH" in asked.stdout  # the favourite market stored by the first process answers the second
    from mikey.memory.store import open_memory
    from mikey.settings import Settings

    memory = open_memory(Settings(home=isolated_env))
    try:
        assert memory.preferences("alice") == {"risk_tolerance": "low", "favourite_markets": "ETH"}
        assert any("What's up with the market?" in hit.text for hit in memory.recall("market", user_id="alice"))
    finally:
        memory.close()


def test_interactive_prompt_does_not_wait_for_the_chat_to_load(isolated_env) -> None:
    """The prompt is shown while the chat graph and the memory are still loading (they are held back here until it
    is); a question typed at once is answered when they are ready, and exit closes everything."""
    code = """
import sys, threading
import rich.console
import mikey.cli.chat as chat_cli
import mikey.memory.store as store
from mikey.cli import main

prompted = threading.Event()
real_load, real_open = chat_cli._load_chat, store.open_memory

def after_prompt(real):
    def held(*args, **kwargs):
        assert prompted.wait(60), "the chat waited for this before showing its prompt"
        return real(*args, **kwargs)
    return held

chat_cli._load_chat, store.open_memory = after_prompt(real_load), after_prompt(real_open)
typed = iter(["How is SOL doing?", "exit"])

def answer(self, prompt="", **kwargs):
    if not prompted.is_set():
        print("AT PROMPT", [m for m in ("langgraph", "pandas", "chromadb.api.client") if m in sys.modules], flush=True)
        prompted.set()
    return next(typed)

rich.console.Console.input = answer
sys.argv = ["mikey", "chat", "--model", "offline", "--no-stream"]
main()
"""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MIKEY_")},
           "MIKEY_HOME": str(isolated_env), "COLUMNS": "200", "PYTHONPATH": str(NETGUARD_DIR)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=180)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert done.stdout.index("MIKEY chat (offline)") < done.stdout.index("AT PROMPT []")
    assert "Facts: SOL" in done.stdout and "Written by offline" in done.stdout
