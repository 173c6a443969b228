"""Alert rules in SQLite (``settings.alerts_db``), shared by every MIKEY process on the machine.

Each operation opens its own connection (``execution.db``'s helpers: WAL, a busy timeout), so the chat service,
``mikey insights --every`` and ``mikey data ingest`` may evaluate the same rules at once. ``mark_fired`` is the one
arbiter between them: a single ``UPDATE ... WHERE status = 'active'`` that only one caller can win, so a rule fires
(and is delivered) once. Deleting is soft: a deleted rule stays, with its history, under ``list(statuses=...)``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mikey.alerts.rules import AlertRule, AlertStatus, DeliveryStatus, new_id
from mikey.domain.utc import require_utc, utc_now
from mikey.errors import NotFound
from mikey.execution import db

SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    market TEXT,
    kind TEXT NOT NULL,
    indicator TEXT,
    threshold REAL NOT NULL,
    text TEXT NOT NULL,
    created_at TEXT NOT NULL,
    status TEXT NOT NULL,
    reference REAL,
    fired_at TEXT,
    fired_value REAL,
    fired_as_of TEXT,
    delivery TEXT,
    delivery_error TEXT,
    deleted_at TEXT
);
CREATE INDEX IF NOT EXISTS alerts_by_user ON alerts (user_id, status, created_at);
"""

COLUMNS = tuple(AlertRule.model_fields)
_ID_ATTEMPTS = 20


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat(timespec="microseconds")


class AlertStore:
    """Add, read, delete and fire alert rules; safe across threads and processes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with closing(db.connect(path)) as conn:
            db.use_wal(conn)
            conn.executescript(SCHEMA)

    def add(self, rule: AlertRule) -> AlertRule:
        """Store a new rule; its id changes if another rule has it already (ids are short). Returns what is stored."""
        for _ in range(_ID_ATTEMPTS):
            row = self._row(rule)
            try:
                with db.immediate(self.path) as conn:
                    conn.execute(f"INSERT INTO alerts ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                                 tuple(row.values()))
                return rule
            except sqlite3.IntegrityError:
                rule = rule.model_copy(update={"id": new_id()})
        raise RuntimeError(f"no free alert id after {_ID_ATTEMPTS} tries")  # 16M ids: a bug, not bad luck

    def get(self, rule_id: str) -> AlertRule:
        """One rule by id; ``NotFound`` when there is none."""
        rows = self._select("WHERE id = ?", (rule_id,))
        if not rows:
            raise NotFound(f"no alert {rule_id!r}")
        return rows[0]

    def list(self, user_id: str | None = None, *, statuses: Iterable[AlertStatus] = ("active",)) -> list[AlertRule]:
        """Rules with these statuses (of one user, or everyone's), oldest first."""
        wanted = tuple(statuses)
        where = f"WHERE status IN ({', '.join('?' * len(wanted))})"
        params: tuple[Any, ...] = wanted
        if user_id is not None:
            where, params = where + " AND user_id = ?", (*params, user_id)
        return self._select(where + " ORDER BY created_at, rowid", params)

    def delete(self, rule_id: str, *, user_id: str) -> AlertRule:
        """Delete one of the user's rules (soft: it stays, with status 'deleted'); a rule of another user, or one
        already deleted, is ``NotFound``. Deleting a fired rule removes it from the list."""
        with db.immediate(self.path) as conn:
            found = conn.execute("UPDATE alerts SET status = 'deleted', deleted_at = ? WHERE id = ? AND user_id = ? "
                                 "AND status != 'deleted'", (_iso(utc_now()), rule_id, user_id)).rowcount
        if not found:
            raise NotFound(f"no alert {rule_id!r} of yours to delete (see `mikey alerts list --all`)")
        return self.get(rule_id)

    def mark_fired(self, rule_id: str, *, value: float, as_of: datetime, now: datetime | None = None,
                   ) -> AlertRule | None:
        """Claim the firing of an active rule: the fired rule (delivery 'pending') for the one caller that wins, None
        for every other (it fired already, or was deleted). One statement, so SQLite's write lock decides."""
        fired_at = require_utc(now or utc_now())
        with db.immediate(self.path) as conn:
            won = conn.execute("UPDATE alerts SET status = 'fired', fired_at = ?, fired_value = ?, fired_as_of = ?, "
                               "delivery = 'pending' WHERE id = ? AND status = 'active'",
                               (_iso(fired_at), float(value), _iso(require_utc(as_of)), rule_id)).rowcount
        return self.get(rule_id) if won else None

    def record_delivery(self, rule_id: str, status: DeliveryStatus, error: str | None = None) -> AlertRule:
        """How the fired rule's delivery went: terminal (no webhook set), delivered, or failed with why."""
        with db.immediate(self.path) as conn:
            conn.execute("UPDATE alerts SET delivery = ?, delivery_error = ? WHERE id = ?", (status, error, rule_id))
        return self.get(rule_id)

    def _select(self, clause: str, params: tuple[Any, ...]) -> list[AlertRule]:
        with closing(db.connect(self.path)) as conn:
            conn.row_factory = sqlite3.Row
            rows = conn.execute(f"SELECT {', '.join(COLUMNS)} FROM alerts {clause}", params).fetchall()
        return [AlertRule.model_validate(dict(row)) for row in rows]

    @staticmethod
    def _row(rule: AlertRule) -> dict[str, Any]:
        data = rule.model_dump()
        for key in ("created_at", "fired_at", "fired_as_of"):
            data[key] = _iso(data[key])
        return data
