"""The audit log: every lifecycle transition of a proposal or position, append-only and hash-chained.

Each entry says who (a user id or ``"system"``), when (UTC), what (``action``), to which proposal or position
(``subject``), why (``reason``), and with what (``payload``: the price and the risk assessment the decision was made
with, any JSON object). Each entry carries the hash of the one before it, so an edited, deleted or reordered entry
breaks the chain and ``AuditLog.verify`` names the first entry where it breaks.

**The encoding that is hashed.** ``hash = sha256(canonical(entry)).hexdigest()``, where ``canonical`` is the JSON
object of the entry's fields ``seq, ts, actor, action, subject, reason, payload, prev_hash`` with sorted keys (at every
depth), no whitespace (``","`` and ``":"`` separators), ASCII only (other characters as ``\\uXXXX`` escapes), no NaN or
infinity, encoded as ASCII bytes. ``ts`` is ISO 8601 in UTC with microseconds (``2026-12-03T16:00:00.000000+00:00``).
The first entry's ``prev_hash`` is 64 zeros (``GENESIS``). This is ``json.dumps(fields, sort_keys=True,
separators=(",", ":"), ensure_ascii=True, allow_nan=False)`` in Python, and easy to reproduce elsewhere.

**Storage.** SQLite at a path (the product's is ``settings.audit_db``). An append reads the chain's head and inserts
the next entry inside one ``BEGIN IMMEDIATE`` transaction, so processes appending at once still build one chain.
Triggers refuse ``UPDATE`` and ``DELETE`` on the entries, so no code path of MIKEY can rewrite history by mistake.

**What the chain can and cannot show.** The chain alone detects an edited entry (its hash no longer matches), a
deleted or reordered middle entry (a gap in ``seq``, or a ``prev_hash`` that does not link), but not a deleted *tail*:
the entries left are a valid, shorter chain. So the log also keeps a head record (the last ``seq`` and hash, in a
second table written in the same transaction as the entry), and ``verify`` compares the chain's end with it:
truncation is detected too. None of this stops someone who can write the file and recompute SHA-256 from forging a
whole new chain and head; it makes tampering by editing rows evident, which is what the log is for. Anchoring the
head elsewhere (another machine, a signed checkpoint) would close that gap.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

from mikey.domain.utc import require_utc, utc_now
from mikey.errors import InvalidInput
from mikey.execution import db

GENESIS = "0" * 64
"""``prev_hash`` of the first entry: there is nothing before it."""

AuditAction = Literal[
    "proposed", "approved", "rejected", "expired", "submitted", "filled", "failed", "reduced", "closed",
    "halted", "resumed", "blocked", "gates", "discrepancy", "reconciled", "refused",
]
"""The transitions the log records. A new one is one more name here: the hash covers the action as its text, so
entries written before stay valid."""

ACTIONS: frozenset[str] = frozenset(get_args(AuditAction))

BreakReason = Literal["edited", "deleted", "reordered"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS audit_entries (
    seq INTEGER PRIMARY KEY,
    ts TEXT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    subject TEXT NOT NULL,
    reason TEXT NOT NULL,
    payload TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_entries_subject ON audit_entries (subject, seq);
CREATE TABLE IF NOT EXISTS audit_head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL,
    hash TEXT NOT NULL
);
CREATE TRIGGER IF NOT EXISTS audit_entries_no_update BEFORE UPDATE ON audit_entries
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_entries_no_delete BEFORE DELETE ON audit_entries
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"""

COLUMNS = ("seq", "ts", "actor", "action", "subject", "reason", "payload", "prev_hash", "hash")
INSERT = f"INSERT INTO audit_entries ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})"


class AuditEntry(BaseModel):
    """One recorded transition, as stored and as hashed."""

    model_config = ConfigDict(frozen=True)

    seq: int = Field(description="Position in the chain, from 1, without gaps.")
    ts: datetime = Field(description="When it was recorded, UTC.")
    actor: str = Field(description='Who: a user id, or "system" for MIKEY itself (expiry, reconciliation).')
    action: AuditAction
    subject: str = Field(description="The proposal or position id the transition is about.")
    reason: str = Field(description="Why, in words: the user's answer, the gate that blocked, the broker's error.")
    payload: dict[str, Any] = Field(description="What it was made with (price, risk assessment), canonical JSON.")
    prev_hash: str = Field(description="``hash`` of the entry before; ``GENESIS`` for the first.")
    hash: str = Field(description="SHA-256 (hex) of the canonical encoding of every field above.")


class ChainCheck(BaseModel):
    """The result of ``AuditLog.verify``: whether the chain is intact, and if not where it first breaks and why."""

    model_config = ConfigDict(frozen=True)

    ok: bool
    entries: int = Field(description="Entries read.")
    first_bad_seq: int | None = Field(None, description="The first sequence number that is wrong or missing.")
    reason: BreakReason | None = Field(
        None, description="edited: an entry's hash does not match its fields; deleted: an entry is missing (a gap, a "
                          "broken link, a chain shorter than its head record); reordered: an entry links to one "
                          "that comes after it.")
    detail: str = Field("", description="The break in words.")


def canonical_json(value: Any) -> str:
    """``value`` as canonical JSON text (sorted keys, no whitespace, ASCII, no NaN), the form that is hashed."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def format_ts(ts: datetime) -> str:
    """The one text form of a timestamp in the log: UTC, ISO 8601, always with microseconds."""
    return require_utc(ts).isoformat(timespec="microseconds")


def entry_hash(*, seq: int, ts: str, actor: str, action: str, subject: str, reason: str, payload: Any,
               prev_hash: str) -> str:
    """SHA-256 (hex) of an entry's canonical encoding; ``ts`` as ``format_ts`` writes it."""
    fields = {"seq": seq, "ts": ts, "actor": actor, "action": action, "subject": subject, "reason": reason,
              "payload": payload, "prev_hash": prev_hash}
    return hashlib.sha256(canonical_json(fields).encode("ascii")).hexdigest()


def _check_keys(value: Any, where: str = "payload") -> None:
    """Refuse non-string object keys: JSON would turn ``1`` into ``"1"``, so two payloads would share one encoding."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidInput(f"{where} has a non-string key {key!r}; JSON object keys are strings")
            _check_keys(item, f"{where}.{key}")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check_keys(item, f"{where}[{index}]")


def canonical_payload(payload: dict[str, Any]) -> str:
    """The payload's canonical JSON, or ``InvalidInput`` saying why it cannot be stored as it is."""
    if not isinstance(payload, dict):
        raise InvalidInput(f"an audit payload is a JSON object (dict), not {type(payload).__name__}")
    _check_keys(payload)
    try:
        return canonical_json(payload)
    except ValueError as exc:  # NaN or infinity (allow_nan=False), or a circular reference
        raise InvalidInput(f"audit payload is not valid JSON: {exc}") from exc
    except TypeError as exc:  # a Decimal, a datetime, a model: the caller converts (model_dump(mode="json"))
        raise InvalidInput(f"audit payload is not JSON-serialisable: {exc}; convert it first, e.g. "
                           "model.model_dump(mode='json')") from exc


def _text(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput(f"audit {name} must be a non-empty string, got {value!r}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInput(f"audit {name} is not valid Unicode text: {exc}") from exc
    return value


class AuditLog:
    """The audit log in one SQLite file, safe to share between threads and to append to from several processes.

    Args:
        path: the SQLite file (created with its folder if missing).
        clock: where ``ts`` comes from (tests pin it); must return timezone-aware datetimes.
        timeout: seconds an append waits for another process's append to finish before giving up.
    """

    def __init__(self, path: Path | str, *, clock: Callable[[], datetime] = utc_now, timeout: float = 30.0) -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._clock = clock
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(str(path), timeout=timeout, check_same_thread=False, isolation_level=None)
        try:
            db.use_wal(self._conn, timeout)
            self._conn.execute("BEGIN IMMEDIATE")
            for statement in _statements(SCHEMA):
                self._conn.execute(statement)
            # A head record only for a new, empty log: a log whose head was deleted must stay without one, so
            # ``verify`` keeps reporting it.
            self._conn.execute("INSERT INTO audit_head (id, seq, hash) SELECT 1, 0, ? "
                               "WHERE NOT EXISTS (SELECT 1 FROM audit_entries) "
                               "AND NOT EXISTS (SELECT 1 FROM audit_head)", (GENESIS,))
            self._conn.execute("COMMIT")
        except BaseException:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            self._conn.close()
            raise

    def append(self, *, actor: str, action: AuditAction, subject: str, reason: str,
               payload: dict[str, Any] | None = None) -> AuditEntry:
        """Record one transition at the end of the chain and return it as stored.

        Raises:
            InvalidInput: an unknown action, an empty actor, subject or reason, or a payload that is not a JSON object
                (NaN, infinity, a Decimal, a non-string key...). Nothing is written.
        """
        actor, subject, reason = _text("actor", actor), _text("subject", subject), _text("reason", reason)
        if action not in ACTIONS:
            raise InvalidInput(f"unknown audit action {action!r}; known: {', '.join(sorted(ACTIONS))}")
        payload_text = canonical_payload({} if payload is None else payload)
        stored_payload = json.loads(payload_text)  # what a reader gets back: lists for tuples, and so on
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")  # the write lock first: no other process appends in between
            try:
                ts = format_ts(self._clock())  # under the lock, so times follow the chain's order
                seq, prev_hash = self._next_link()
                digest = entry_hash(seq=seq, ts=ts, actor=actor, action=action, subject=subject, reason=reason,
                                    payload=stored_payload, prev_hash=prev_hash)
                self._conn.execute(INSERT, (seq, ts, actor, action, subject, reason, payload_text, prev_hash,
                                            digest))
                self._conn.execute("UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1", (seq, digest))
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        return AuditEntry(seq=seq, ts=datetime.fromisoformat(ts), actor=actor, action=action, subject=subject,
                          reason=reason, payload=stored_payload, prev_hash=prev_hash, hash=digest)

    def _next_link(self) -> tuple[int, str]:
        """The next ``seq`` and the ``prev_hash`` it links to.

        The head record leads, not the last row: after a deleted tail, new entries still link to the lost one, so the
        gap stays visible instead of being papered over. Without a head record (deleted), or with rows past it
        (written around the log), the last row leads and ``verify`` reports the head."""
        head = self._conn.execute("SELECT seq, hash FROM audit_head WHERE id = 1").fetchone()
        last = self._conn.execute("SELECT seq, hash FROM audit_entries ORDER BY seq DESC LIMIT 1").fetchone()
        if head is not None and (last is None or head[0] >= last[0]):
            return head[0] + 1, head[1]
        if last is not None:
            return last[0] + 1, last[1]
        return 1, GENESIS

    def entries(self, subject: str | None = None) -> list[AuditEntry]:
        """Every entry, or those about one proposal or position, oldest first."""
        sql = f"SELECT {', '.join(COLUMNS)} FROM audit_entries"
        args: tuple[str, ...] = ()
        if subject is not None:
            sql += " WHERE subject = ?"
            args = (subject,)
        with self._lock:
            rows = self._conn.execute(sql + " ORDER BY seq", args).fetchall()
        return [_entry(row) for row in rows]

    def verify(self) -> ChainCheck:
        """Walk the chain from the first entry and compare its end with the head record.

        Reports the first break only: everything after an edited entry is suspect anyway.
        """
        with self._lock:
            self._conn.execute("BEGIN")  # one snapshot: an append from another process does not land mid-walk
            try:
                rows = self._conn.execute(f"SELECT {', '.join(COLUMNS)} FROM audit_entries ORDER BY seq").fetchall()
                head = self._conn.execute("SELECT seq, hash FROM audit_head WHERE id = 1").fetchone()
            finally:
                self._conn.execute("COMMIT")
        return check_chain(rows, head)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _statements(script: str) -> list[str]:
    """``script`` split into statements (``executescript`` would commit the transaction it runs in)."""
    statements, current = [], ""
    for line in script.strip().splitlines():
        current += line + "\n"
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    return statements


def _entry(row: tuple[Any, ...]) -> AuditEntry:
    fields = dict(zip(COLUMNS, row, strict=True))
    fields["payload"] = json.loads(fields["payload"])
    return AuditEntry.model_validate(fields)


def _row_hash(fields: dict[str, Any]) -> str | None:
    """The hash an entry's stored fields give, or None when they are not even readable (payload not JSON)."""
    try:
        payload = json.loads(fields["payload"], parse_constant=_no_constant)
        return entry_hash(seq=fields["seq"], ts=fields["ts"], actor=fields["actor"], action=fields["action"],
                          subject=fields["subject"], reason=fields["reason"], payload=payload,
                          prev_hash=fields["prev_hash"])
    except (ValueError, TypeError, UnicodeEncodeError):
        return None


def _original_seq(fields: dict[str, Any], candidates: range) -> int | None:
    """The ``seq`` among ``candidates`` under which a row's other fields match its hash: where it was before the rows
    were renumbered (the head record bounds how far that can be)."""
    return next((seq for seq in candidates if _row_hash({**fields, "seq": seq}) == fields["hash"]), None)


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} in a stored payload")


def check_chain(rows: list[tuple[Any, ...]], head: tuple[int, str] | None) -> ChainCheck:
    """The verdict on stored rows (``COLUMNS``, by ``seq``) and the head record (``(seq, hash)`` or None)."""
    entries = [dict(zip(COLUMNS, row, strict=True)) for row in rows]
    seq_of_hash = {fields["hash"]: fields["seq"] for fields in entries}
    expected_seq, expected_prev = 1, GENESIS

    def broken(seq: int, reason: BreakReason, detail: str) -> ChainCheck:
        return ChainCheck(ok=False, entries=len(entries), first_bad_seq=seq, reason=reason, detail=detail)

    for fields in entries:
        seq = fields["seq"]
        if seq != expected_seq:
            return broken(expected_seq, "deleted", f"entry {expected_seq} is missing (the next one is {seq})")
        links = fields["prev_hash"] == expected_prev
        if _row_hash(fields) != fields["hash"]:
            target = seq_of_hash.get(fields["prev_hash"])
            if not links and target is not None and target > seq:
                return broken(seq, "reordered", f"entry {seq} links to entry {target}, which comes after it")
            original = _original_seq(fields, range(seq + 1, max(head[0] if head else 0, entries[-1]["seq"]) + 1))
            if original is not None:
                return broken(seq, "deleted", f"entry {seq} was entry {original}: the entries before it were "
                                              "deleted and the rest renumbered")
            return broken(seq, "edited", f"entry {seq}'s fields do not match its hash")
        if not links:
            return broken(seq, "deleted", f"entry {seq} does not link to entry {seq - 1}: an entry between them was "
                                          "removed or replaced")
        expected_seq, expected_prev = seq + 1, fields["hash"]

    last_seq = expected_seq - 1
    if head is None:
        return broken(last_seq + 1, "deleted", "the head record is missing, so a deleted tail cannot be ruled out")
    head_seq, head_hash = head
    if head_seq > last_seq:
        return broken(last_seq + 1, "deleted", f"the log ends at entry {last_seq} but its head record is entry "
                                               f"{head_seq}: entries {last_seq + 1}-{head_seq} were deleted")
    if head_seq < last_seq:
        return broken(head_seq + 1, "edited", f"entries {head_seq + 1}-{last_seq} were written around the log (its "
                                              f"head record is entry {head_seq})")
    if head_hash != expected_prev:
        return broken(last_seq, "edited", f"entry {last_seq} is not the one the head record names")
    return ChainCheck(ok=True, entries=len(entries))
