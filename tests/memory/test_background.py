"""``BackgroundMemory``: opened in a thread, writes queued after the caller moves on, never skipped or lost. A small
recording memory stands in for Chroma (the real one is exercised through the CLI in tests/test_cli.py)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mikey.domain import Answer
from mikey.errors import ConfigError, InvalidInput
from mikey.memory.background import BackgroundMemory


class Recording:
    """A ``VectorMemory`` that records calls; each write takes ``delay`` seconds, ``fail`` names a key that fails."""

    def __init__(self, delay: float = 0.0, fail: str | None = None) -> None:
        self.delay, self.fail = delay, fail
        self.calls: list[tuple[str, str]] = []
        self.prefs: dict[str, dict[str, str]] = {}
        self.closed = False

    def set_preference(self, user_id: str, key: str, value: str) -> None:
        time.sleep(self.delay)
        if key == self.fail:
            raise InvalidInput(f"cannot store {key}")
        self.prefs.setdefault(user_id, {})[key] = value
        self.calls.append(("set_preference", key))

    def remember_turn(self, *, thread_id: str, user_id: str, question: str, answer: Answer) -> str | None:
        time.sleep(self.delay)
        self.calls.append(("remember_turn", question))
        return "turn-id"

    def preferences(self, user_id: str) -> dict[str, str]:
        self.calls.append(("preferences", user_id))
        return dict(self.prefs.get(user_id, {}))

    def recall(self, query: str, **options):
        self.calls.append(("recall", query))
        return []

    def close(self) -> None:
        self.closed = True


def test_writes_return_at_once_and_run_in_order_before_the_next_read() -> None:
    inner = Recording(delay=0.2)
    memory = BackgroundMemory(lambda: inner)
    started = time.monotonic()
    memory.set_preference("alice", "risk_tolerance", "low")
    memory.remember_turn(thread_id="t", user_id="alice", question="How is SOL doing?",
                         answer=Answer(text="Fine.", group="offline", model="writer"))
    assert time.monotonic() - started < 0.15  # queued, not run: the caller shows its answer meanwhile
    assert memory.preferences("alice") == {"risk_tolerance": "low"}  # the read waited for both writes
    assert inner.calls == [("set_preference", "risk_tolerance"), ("remember_turn", "How is SOL doing?"),
                           ("preferences", "alice")]
    memory.close()
    assert inner.closed


def test_reads_wait_for_the_memory_to_open() -> None:
    opened = threading.Event()

    def opener() -> Recording:
        opened.wait(5)
        return Recording()

    memory = BackgroundMemory(opener)
    threading.Timer(0.2, opened.set).start()
    started = time.monotonic()
    assert memory.recall("why did SOL drop?", k=2) == []
    assert time.monotonic() - started >= 0.15
    memory.close()


def test_a_failed_write_is_raised_once_by_flush_and_the_rest_still_run() -> None:
    inner = Recording(fail="favourite_markets")
    memory = BackgroundMemory(lambda: inner)
    memory.set_preference("alice", "favourite_markets", "SOL")
    memory.set_preference("alice", "risk_tolerance", "high")
    with pytest.raises(InvalidInput, match="cannot store favourite_markets"):
        memory.flush()
    memory.flush()  # reported once
    assert inner.prefs == {"alice": {"risk_tolerance": "high"}}
    memory.close()


def test_close_waits_for_queued_writes_and_raises_a_failed_one() -> None:
    inner = Recording(delay=0.1, fail="risk_tolerance")
    memory = BackgroundMemory(lambda: inner)
    memory.set_preference("bob", "favourite_markets", "ETH")
    memory.set_preference("bob", "risk_tolerance", "low")
    with pytest.raises(InvalidInput):
        memory.close()
    assert inner.prefs == {"bob": {"favourite_markets": "ETH"}}
    assert inner.closed  # closed even though a write failed


def test_an_open_failure_is_raised_by_ready_not_by_close() -> None:
    def opener() -> Recording:
        raise ConfigError("cannot reach the Chroma server")

    memory = BackgroundMemory(opener)
    with pytest.raises(ConfigError, match="cannot reach"):
        memory.ready()
    memory.close()  # nothing to close, nothing written: the failure was already reported by ready()


def test_queued_writes_land_before_the_process_exits(tmp_path: Path) -> None:
    """The interpreter's exit, even on an error in the main thread, waits for every write queued before it."""
    done = tmp_path / "written.txt"
    code = f"""
import time
from mikey.memory.background import BackgroundMemory

class Slow:
    def set_preference(self, user_id, key, value):
        time.sleep(0.5)
        with open({str(done)!r}, "a") as handle:
            handle.write(key + "\\n")

memory = BackgroundMemory(Slow)
memory.set_preference("alice", "first", "1")
memory.set_preference("alice", "second", "2")
raise SystemExit("the main thread ends at once")
"""
    finished = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert finished.returncode == 1, finished.stderr
    assert done.read_text().split() == ["first", "second"]
