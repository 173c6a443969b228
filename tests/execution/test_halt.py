"""The kill switch: a halt in one process stops new positions in another at once; closing and reducing still pass."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mikey.errors import InvalidInput, RiskLimitExceeded
from mikey.execution.halt import KillSwitch
from mikey.settings import Settings

REPO = Path(__file__).resolve().parents[2]
NOON = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


@pytest.fixture
def switch(settings: Settings) -> KillSwitch:
    return KillSwitch.from_settings(settings, clock=lambda: NOON)


def in_other_process(settings: Settings, code: str) -> str:
    """Run ``code`` with ``switch`` (a KillSwitch on the same file) in a fresh interpreter; its stdout."""
    script = ("from pathlib import Path\nfrom mikey.execution.halt import KillSwitch\n"
              f"switch = KillSwitch(Path({str(settings.execution_db)!r}))\n{code}")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_not_halted_by_default(switch: KillSwitch) -> None:
    assert switch.halted() is None
    for kind in ("open", "close", "reduce"):
        switch.check_not_halted(kind)  # type: ignore[arg-type]


def test_a_halt_refuses_new_positions_but_lets_positions_close(switch: KillSwitch) -> None:
    state = switch.halt("funding spike", "alice")

    assert (state.reason, state.actor, state.since) == ("funding spike", "alice", NOON)
    assert switch.halted() == state
    with pytest.raises(RiskLimitExceeded, match=r"halted since 2026-12-03 12:00:00 UTC by alice: funding spike.*"
                                                r"closing or reducing one is allowed"):
        switch.check_not_halted("open")
    switch.check_not_halted("close")
    switch.check_not_halted("reduce")


def test_halting_twice_keeps_the_first_halt(switch: KillSwitch) -> None:
    first = switch.halt("oracle outage", "ops")

    assert switch.halt("second thoughts", "bob") == first
    assert switch.halted() == first


def test_resume_lifts_the_halt_and_says_which(switch: KillSwitch) -> None:
    halt = switch.halt("oracle outage", "ops")

    assert switch.resume("ops") == halt
    assert switch.halted() is None
    switch.check_not_halted("open")
    with pytest.raises(InvalidInput, match="not halted"):
        switch.resume("ops")


def test_a_halt_needs_a_reason_and_an_actor(switch: KillSwitch) -> None:
    with pytest.raises(InvalidInput, match="reason and an actor"):
        switch.halt("  ", "ops")
    with pytest.raises(InvalidInput, match="reason and an actor"):
        switch.halt("why", "")
    assert switch.halted() is None


def test_a_halt_in_another_process_is_seen_at_once(switch: KillSwitch, settings: Settings) -> None:
    switch.check_not_halted("open")  # this process has the file open before the other one halts

    in_other_process(settings, "switch.halt('manual stop from the CLI', 'cli')")

    with pytest.raises(RiskLimitExceeded, match="manual stop from the CLI"):
        switch.check_not_halted("open")
    switch.check_not_halted("close")

    in_other_process(settings, "switch.resume('cli')")
    assert switch.halted() is None
    switch.check_not_halted("open")


def test_a_halt_here_is_seen_by_another_process(switch: KillSwitch, settings: Settings) -> None:
    switch.halt("risk desk", "ops")

    out = in_other_process(settings, "\n".join([
        "from mikey.errors import RiskLimitExceeded",
        "switch.check_not_halted('reduce')",
        "try:\n    switch.check_not_halted('open')\nexcept RiskLimitExceeded as exc:\n    print('refused:', exc)",
    ]))

    assert out.startswith("refused: trading halted since 2026-12-03 12:00:00 UTC by ops: risk desk")
