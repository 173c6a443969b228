"""``mikey halt`` and ``mikey positions audit`` through the real CLI, in fresh processes sharing one MIKEY_HOME."""

from __future__ import annotations

import json
import sqlite3

from tests.conftest import run_mikey


def test_halt_blocks_new_positions_in_every_process_until_lifted(isolated_env) -> None:
    from mikey.execution.halt import KillSwitch
    from mikey.settings import Settings

    env = {"MIKEY_HOME": str(isolated_env), "MIKEY_USER_ID": "ops"}
    done = run_mikey("halt", "--reason", "oracle outage", "--json", env=env)
    assert done.returncode == 0, done.stderr
    state = json.loads(done.stdout)
    assert state["halted"] and state["reason"] == "oracle outage" and state["actor"] == "ops"

    switch = KillSwitch.from_settings(Settings(home=isolated_env))  # this process sees the other's halt at once
    assert switch.halted() is not None and switch.halted().reason == "oracle outage"
    switch.check_not_halted("close")  # closing stays allowed

    lifted = run_mikey("halt", "--off", env=env)
    assert lifted.returncode == 0 and "trading resumed" in lifted.stdout
    assert switch.halted() is None
    again = run_mikey("halt", "--off", env=env)
    assert again.returncode == 1 and again.stderr.startswith("error: ") and "Traceback" not in again.stderr

    log = run_mikey("positions", "audit", "--json", env=env)
    actions = [json.loads(line)["action"] for line in log.stdout.splitlines()]
    assert actions == ["halted", "resumed"]
    assert run_mikey("positions", "audit", "--verify", env=env).stdout.startswith("audit log intact: 2 entries")


def test_audit_verify_detects_an_edited_entry(isolated_env) -> None:
    env = {"MIKEY_HOME": str(isolated_env)}
    assert run_mikey("halt", "-r", "first", env=env).returncode == 0
    assert run_mikey("halt", "--off", env=env).returncode == 0
    assert run_mikey("halt", "-r", "third", env=env).returncode == 0
    with sqlite3.connect(isolated_env / "audit.sqlite") as conn:  # whoever tampers can drop the guard first
        conn.execute("DROP TRIGGER audit_entries_no_update")
        conn.execute("UPDATE audit_entries SET reason = 'nothing happened' WHERE seq = 2")
    conn.close()
    broken = run_mikey("positions", "audit", "--verify", env=env)
    assert broken.returncode == 1 and "audit log BROKEN at entry 2 (edited)" in broken.stdout


def test_audit_on_a_fresh_home_is_empty_not_an_error(isolated_env) -> None:
    done = run_mikey("positions", "audit", "--verify", env={"MIKEY_HOME": str(isolated_env)})
    assert done.returncode == 0 and "empty" in done.stdout
