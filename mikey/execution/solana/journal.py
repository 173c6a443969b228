"""The Solana broker's order journal: client_id -> the one transaction that may execute it.

A transaction's signature is its identity on Solana: the same signed bytes execute at most once, however often they
are sent. So the journal records the signed transaction *before* it is sent, and every later question about that
order (a retry after a timeout, ``lookup`` after a crash) re-checks that signature instead of signing a new one. A
new transaction is signed only once the old one can never land (its blockhash expired).

It also allocates each opening order's ``position_index`` (the Position PDA's seed) deterministically from the
client_id, skipping indexes the journal already gave to other orders, so a resubmitted proposal always targets the
same Position account, and the program's ``init`` refuses a second open of it even if the journal were lost.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mikey.domain.utc import utc_now
from mikey.errors import OrderRejected

SCHEMA = """
CREATE TABLE IF NOT EXISTS orders (
    client_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    market TEXT NOT NULL,
    request TEXT NOT NULL,
    oracle_price REAL NOT NULL,
    user_account TEXT NOT NULL,
    position TEXT NOT NULL,
    position_index INTEGER,
    context TEXT NOT NULL DEFAULT '{}',
    state TEXT NOT NULL,
    tx TEXT,
    signature TEXT,
    fill TEXT,
    error TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS orders_slot ON orders (user_account, position_index)
    WHERE position_index IS NOT NULL;
CREATE INDEX IF NOT EXISTS orders_position ON orders (position);
"""

MAX_INDEX_ATTEMPTS = 256


def derive_position_index(client_id: str, attempt: int = 0) -> int:
    """A u16 from the client_id: the same id always gives the same index (``attempt`` 0 unless it was taken)."""
    seed = client_id if attempt == 0 else f"{client_id}#{attempt}"
    return int.from_bytes(hashlib.sha256(seed.encode()).digest()[:2], "little")


@dataclass(frozen=True)
class OrderRecord:
    client_id: str
    user_id: str
    kind: str
    market: str
    request: dict[str, Any]
    oracle_price: float
    user_account: str
    position: str
    position_index: int | None
    context: dict[str, Any]
    state: str  # planned | signed | filled | failed
    tx: str | None
    signature: str | None
    fill: dict[str, Any] | None
    error: str | None
    created_at: str


class OrderJournal:
    """One SQLite file (or memory, for tests). Each write is its own ``BEGIN IMMEDIATE`` transaction, so two
    processes sharing the file cannot both claim an index."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(":memory:" if path is None else str(path), timeout=30.0,
                                     isolation_level=None, check_same_thread=False)
        self._conn.row_factory = sqlite3.Row
        self._lock = threading.Lock()
        with self._lock:
            if path is not None:
                self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.executescript(SCHEMA)

    def close(self) -> None:
        self._conn.close()

    def get(self, client_id: str) -> OrderRecord | None:
        with self._lock, closing(self._conn.execute("SELECT * FROM orders WHERE client_id = ?", (client_id,))) as cur:
            row = cur.fetchone()
        return None if row is None else _record(row)

    def by_position(self, position: str) -> list[OrderRecord]:
        with self._lock, closing(self._conn.execute(
                "SELECT * FROM orders WHERE position = ? ORDER BY created_at", (position,))) as cur:
            return [_record(row) for row in cur.fetchall()]

    def opened(self, user_id: str | None = None) -> list[OrderRecord]:
        """Every filled opening order (of ``user_id``, or of anyone), newest first."""
        sql = "SELECT * FROM orders WHERE kind = 'open' AND state = 'filled'"
        params: tuple[Any, ...] = ()
        if user_id is not None:
            sql += " AND user_id = ?"
            params = (user_id,)
        with self._lock, closing(self._conn.execute(sql + " ORDER BY created_at DESC", params)) as cur:
            return [_record(row) for row in cur.fetchall()]

    def create(self, *, client_id: str, user_id: str, kind: str, market: str, request: dict[str, Any],
               oracle_price: float, user_account: str, position: str | None, context: dict[str, Any],
               position_for_index: Any = None) -> OrderRecord:
        """Record a new order. For an open (``position`` None), allocate its index and let ``position_for_index``
        (index -> PDA string) name the Position account, in the same transaction."""
        now = utc_now().isoformat()
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                index = None
                if position is None:
                    index = self._free_index(client_id, user_account)
                    position = position_for_index(index)
                self._conn.execute(
                    "INSERT INTO orders (client_id, user_id, kind, market, request, oracle_price, user_account,"
                    " position, position_index, context, state, created_at, updated_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'planned', ?, ?)",
                    (client_id, user_id, kind, market, json.dumps(request), oracle_price, user_account, position,
                     index, json.dumps(context), now, now))
                self._conn.execute("COMMIT")
            except sqlite3.IntegrityError:
                self._conn.execute("ROLLBACK")
                existing = self._conn.execute("SELECT 1 FROM orders WHERE client_id = ?", (client_id,)).fetchone()
                if existing is None:
                    raise
                # another process journaled this client_id first: its record is the order's
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        record = self.get(client_id)
        assert record is not None
        return record

    def _free_index(self, client_id: str, user_account: str) -> int:
        taken = {row[0] for row in self._conn.execute(
            "SELECT position_index FROM orders WHERE user_account = ? AND position_index IS NOT NULL",
            (user_account,))}
        for attempt in range(MAX_INDEX_ATTEMPTS):
            index = derive_position_index(client_id, attempt)
            if index not in taken:
                return index
        raise OrderRejected("no free position slot left for this wallet's user account")

    def update(self, client_id: str, **fields: Any) -> None:
        allowed = {"state", "tx", "signature", "fill", "error", "context"}
        if set(fields) - allowed:
            raise ValueError(f"unknown journal fields {sorted(set(fields) - allowed)}")
        values = {k: json.dumps(v) if k in ("fill", "context") and v is not None else v for k, v in fields.items()}
        assignments = ", ".join(f"{name} = ?" for name in values)
        with self._lock:
            self._conn.execute(f"UPDATE orders SET {assignments}, updated_at = ? WHERE client_id = ?",
                               (*values.values(), utc_now().isoformat(), client_id))


def _record(row: sqlite3.Row) -> OrderRecord:
    return OrderRecord(
        client_id=row["client_id"], user_id=row["user_id"], kind=row["kind"], market=row["market"],
        request=json.loads(row["request"]), oracle_price=row["oracle_price"], user_account=row["user_account"],
        position=row["position"], position_index=row["position_index"], context=json.loads(row["context"]),
        state=row["state"], tx=row["tx"], signature=row["signature"],
        fill=None if row["fill"] is None else json.loads(row["fill"]), error=row["error"],
        created_at=row["created_at"])
