"""The audit log: entries as documented (the hash recomputed here from the documented encoding), one chain under
appends from two processes, every kind of tampering detected by ``verify``, bad input refused with nothing written."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from mikey.errors import InvalidInput
from mikey.execution.audit import GENESIS, AuditLog

T0 = datetime(2026, 12, 3, 16, 0, tzinfo=UTC)
RISK = {"score": 42, "level": "medium", "liquidation_price": 151.25, "checks": [{"name": "leverage", "passed": True}]}


class StepClock:
    """A clock that moves one second per reading, so every entry has a known time."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        value, self.now = self.now, self.now + timedelta(seconds=1)
        return value


@pytest.fixture
def audit_path(settings) -> Path:
    return settings.audit_db


@pytest.fixture
def log(audit_path: Path) -> Iterator[AuditLog]:
    with AuditLog(audit_path, clock=StepClock()) as audit:
        yield audit


def fill(log: AuditLog, n: int = 5) -> None:
    actions = ["proposed", "approved", "submitted", "filled", "closed"]
    for i in range(n):
        log.append(actor="user-1" if i % 2 else "system", action=actions[i % len(actions)], subject=f"p-{i % 2}",
                   reason=f"step {i}", payload={"price": 150.0 + i, "risk": RISK})


def tamper(path: Path, *statements: str) -> None:
    """Change the file as someone with write access would: drop the append-only triggers, run the statements."""
    conn = sqlite3.connect(path)
    try:
        conn.execute("DROP TRIGGER IF EXISTS audit_entries_no_update")
        conn.execute("DROP TRIGGER IF EXISTS audit_entries_no_delete")
        for statement in statements:
            conn.execute(statement)
        conn.commit()
    finally:
        conn.close()


def verify(path: Path):
    with AuditLog(path) as audit:
        return audit.verify()


def test_audit_db_lives_in_mikey_home(settings) -> None:
    assert settings.audit_db == settings.home / "audit.sqlite"


def test_first_entry_hash_matches_the_documented_encoding(log: AuditLog) -> None:
    entry = log.append(actor="user-1", action="proposed", subject="p-1", reason="asked in chat: long SOL 5x",
                       payload={"price": 150.5, "risk": RISK, "note": "naïve ☃"})
    # The documented encoding, written out by hand: sorted keys at every depth, no spaces, ASCII escapes.
    expected_bytes = (
        '{"action":"proposed","actor":"user-1",'
        '"payload":{"note":"na\\u00efve \\u2603","price":150.5,"risk":{"checks":[{"name":"leverage","passed":true}],'
        '"level":"medium","liquidation_price":151.25,"score":42}},'
        '"prev_hash":"' + "0" * 64 + '","reason":"asked in chat: long SOL 5x","seq":1,'
        '"subject":"p-1","ts":"2026-12-03T16:00:00.000000+00:00"}'
    ).encode("ascii")
    assert entry.hash == hashlib.sha256(expected_bytes).hexdigest()
    assert (entry.seq, entry.prev_hash, entry.ts) == (1, GENESIS, T0)
    second = log.append(actor="user-1", action="approved", subject="p-1", reason="yes, do it")
    assert second.prev_hash == entry.hash
    assert second.ts == T0 + timedelta(seconds=1)
    assert log.verify().ok


def test_entries_read_back_oldest_first_and_by_subject(log: AuditLog, audit_path: Path) -> None:
    fill(log, 5)
    written = log.entries()
    assert [e.seq for e in written] == [1, 2, 3, 4, 5]
    assert [e.seq for e in log.entries(subject="p-1")] == [2, 4]
    assert log.entries(subject="nobody") == []
    with AuditLog(audit_path) as again:  # another opening of the file reads the same entries
        assert again.entries() == written
    assert written[3].payload == {"price": 153.0, "risk": RISK}
    check = log.verify()
    assert (check.ok, check.entries, check.first_bad_seq, check.reason) == (True, 5, None, None)


def test_an_empty_log_verifies(log: AuditLog) -> None:
    assert log.verify().model_dump() == {"ok": True, "entries": 0, "first_bad_seq": None, "reason": None,
                                         "detail": ""}


def test_payload_is_canonicalised(log: AuditLog) -> None:
    entry = log.append(actor="system", action="blocked", subject="p-9", reason="halted",
                       payload={"b": (1, 2), "a": {"z": None, "y": -0.5}})
    assert entry.payload == {"a": {"y": -0.5, "z": None}, "b": [1, 2]}
    assert log.entries()[0] == entry


@pytest.mark.parametrize(("payload", "message"), [
    ({"price": float("nan")}, "not valid JSON"),
    ({"risk": {"var": float("inf")}}, "not valid JSON"),
    ({"price": Decimal("150.5")}, "not JSON-serialisable"),
    ({"at": T0}, "not JSON-serialisable"),
    ({"tiers": {1: 0.5}}, "non-string key"),
    ([1, 2], "JSON object"),
])
def test_bad_payload_is_refused_and_writes_nothing(log: AuditLog, payload, message: str) -> None:
    log.append(actor="user-1", action="proposed", subject="p-1", reason="first")
    with pytest.raises(InvalidInput, match=message):
        log.append(actor="user-1", action="approved", subject="p-1", reason="yes", payload=payload)
    assert len(log.entries()) == 1
    assert log.append(actor="user-1", action="approved", subject="p-1", reason="yes").seq == 2
    assert log.verify().ok


@pytest.mark.parametrize("fields", [
    {"action": "executed"}, {"actor": ""}, {"subject": "  "}, {"reason": ""}, {"actor": 7}, {"reason": "\ud800"},
])
def test_bad_fields_are_refused(log: AuditLog, fields: dict) -> None:
    good = {"actor": "user-1", "action": "proposed", "subject": "p-1", "reason": "asked"}
    with pytest.raises(InvalidInput):
        log.append(**{**good, **fields})
    assert log.entries() == []


def test_the_table_refuses_updates_and_deletes(log: AuditLog, audit_path: Path) -> None:
    fill(log, 2)
    conn = sqlite3.connect(audit_path)
    try:
        for statement in ("UPDATE audit_entries SET reason = 'x' WHERE seq = 1", "DELETE FROM audit_entries"):
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                conn.execute(statement)
    finally:
        conn.close()
    assert log.verify().ok


@pytest.mark.parametrize(("column", "value"), [
    ("ts", "'2026-12-03T16:00:09.000000+00:00'"), ("actor", "'user-2'"), ("action", "'rejected'"),
    ("subject", "'p-7'"), ("reason", "'step 2 (edited)'"), ("payload", """'{"price":1.0}'"""),
    ("prev_hash", "'" + "1" * 64 + "'"), ("hash", "'" + "2" * 64 + "'"), ("payload", "'not json'"),
])
def test_an_edited_middle_entry_is_detected(log: AuditLog, audit_path: Path, column: str, value: str) -> None:
    fill(log, 5)
    tamper(audit_path, f"UPDATE audit_entries SET {column} = {value} WHERE seq = 3")
    check = verify(audit_path)
    assert (check.ok, check.first_bad_seq, check.reason) == (False, 3, "edited")
    assert check.entries == 5


@pytest.mark.parametrize(("statements", "first_bad_seq", "reason", "detail"), [
    pytest.param(["UPDATE audit_entries SET seq = 30 WHERE seq = 5"], 5, "deleted", "entry 5 is missing",
                 id="moved-last"),
    pytest.param(["DELETE FROM audit_entries WHERE seq = 3"], 3, "deleted", "entry 3 is missing", id="deleted-middle"),
    pytest.param(["DELETE FROM audit_entries WHERE seq = 1"], 1, "deleted", "entry 1 is missing", id="deleted-first"),
    pytest.param(["DELETE FROM audit_entries WHERE seq = 3", "UPDATE audit_entries SET seq = seq - 1 WHERE seq > 3"],
                 3, "deleted", "entry 3 was entry 4", id="deleted-middle-renumbered"),
    pytest.param(["UPDATE audit_entries SET seq = -3 WHERE seq = 3", "UPDATE audit_entries SET seq = 3 WHERE seq = 4",
                  "UPDATE audit_entries SET seq = 4 WHERE seq = -3"], 3, "reordered", "links to entry 4",
                 id="swapped"),
    # The chain alone cannot see a deleted tail (what is left is a valid, shorter chain); the head record can.
    pytest.param(["DELETE FROM audit_entries WHERE seq >= 4"], 4, "deleted", "4-5 were deleted", id="deleted-tail"),
    pytest.param(["DELETE FROM audit_entries"], 1, "deleted", "1-5 were deleted", id="deleted-all"),
    pytest.param(["INSERT INTO audit_entries SELECT 6, ts, actor, action, subject, reason, payload, prev_hash, hash "
                  "FROM audit_entries WHERE seq = 5"], 6, "edited", "do not match its hash", id="copied-row"),
    # A head record behind the chain: the last entry did not come through ``append``.
    pytest.param(["UPDATE audit_head SET seq = 4, hash = (SELECT hash FROM audit_entries WHERE seq = 4)"], 5, "edited",
                 "written around the log", id="head-behind"),
])
def test_tampering_is_detected(log: AuditLog, audit_path: Path, statements: list[str], first_bad_seq: int,
                               reason: str, detail: str) -> None:
    fill(log, 5)
    tamper(audit_path, *statements)
    check = verify(audit_path)
    assert (check.ok, check.first_bad_seq, check.reason) == (False, first_bad_seq, reason)
    assert detail in check.detail


def test_an_edited_entry_with_its_hash_recomputed_breaks_the_next_link(log: AuditLog, audit_path: Path) -> None:
    """Someone who recomputes the edited entry's own hash still breaks the next entry's link to it."""
    from mikey.execution.audit import entry_hash

    fill(log, 5)
    old = log.entries()[2]
    new_hash = entry_hash(seq=3, ts=old.ts.isoformat(timespec="microseconds"), actor=old.actor, action=old.action,
                          subject=old.subject, reason="forged", payload=old.payload, prev_hash=old.prev_hash)
    tamper(audit_path, f"UPDATE audit_entries SET reason = 'forged', hash = '{new_hash}' WHERE seq = 3")
    check = verify(audit_path)
    assert (check.ok, check.first_bad_seq, check.reason) == (False, 4, "deleted")
    assert "does not link" in check.detail


def test_appends_after_a_deleted_tail_keep_the_gap_visible(audit_path: Path) -> None:
    with AuditLog(audit_path) as audit:
        fill(audit, 5)
    tamper(audit_path, "DELETE FROM audit_entries WHERE seq = 5")
    with AuditLog(audit_path) as audit:
        assert audit.append(actor="system", action="expired", subject="p-0", reason="ttl").seq == 6
        check = audit.verify()
    assert (check.ok, check.first_bad_seq, check.reason) == (False, 5, "deleted")


def test_a_deleted_head_record_is_detected_and_stays_missing(log: AuditLog, audit_path: Path) -> None:
    fill(log, 3)
    tamper(audit_path, "DELETE FROM audit_head")
    with AuditLog(audit_path) as audit:  # reopening does not quietly make a new head
        audit.append(actor="system", action="halted", subject="switch", reason="mikey halt")
        check = audit.verify()
    assert (check.ok, check.first_bad_seq, check.reason) == (False, 5, "deleted")
    assert "head record is missing" in check.detail


CHILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from mikey.execution.audit import AuditLog

    path, actor, go = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    with AuditLog(path) as log:
        print("ready", flush=True)
        while not go.exists():
            time.sleep(0.001)
        for i in range(50):
            log.append(actor=actor, action="approved", subject=f"p-{i}", reason=f"{actor} #{i}",
                       payload={"i": i, "actor": actor})
""")


def test_two_processes_appending_at_once_build_one_chain(audit_path: Path, tmp_path: Path) -> None:
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, str(audit_path), actor, str(go)], stdout=subprocess.PIPE,
                              text=True) for actor in ("alice", "bob")]
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        go.touch()
        for proc in procs:
            assert proc.wait(timeout=120) == 0
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            assert proc.stdout is not None
            proc.stdout.close()
    with AuditLog(audit_path) as log:
        check = log.verify()
        entries = log.entries()
    assert (check.ok, check.entries) == (True, 100)
    assert [e.seq for e in entries] == list(range(1, 101))
    for actor in ("alice", "bob"):
        assert [e.payload["i"] for e in entries if e.actor == actor] == list(range(50))
    assert [e.ts for e in entries] == sorted(e.ts for e in entries)


def test_hash_recomputed_from_the_stored_row(log: AuditLog, audit_path: Path) -> None:
    """What is on disk is enough to check an entry: the row's columns through the documented encoding."""
    fill(log, 2)
    conn = sqlite3.connect(audit_path)
    try:
        seq, ts, actor, action, subject, reason, payload, prev_hash, digest = conn.execute(
            "SELECT seq, ts, actor, action, subject, reason, payload, prev_hash, hash FROM audit_entries "
            "WHERE seq = 2").fetchone()
    finally:
        conn.close()
    fields = {"seq": seq, "ts": ts, "actor": actor, "action": action, "subject": subject, "reason": reason,
              "payload": json.loads(payload), "prev_hash": prev_hash}
    encoded = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    assert digest == hashlib.sha256(encoded.encode("ascii")).hexdigest()
    assert prev_hash == log.entries()[0].hash
