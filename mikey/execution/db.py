"""The execution database: one SQLite file (``settings.execution_db``) shared by every MIKEY process on the machine.

Proposals and the kill switch live in the same file so that one ``BEGIN IMMEDIATE`` transaction can read the halt
and move a proposal to ``submitted``: a halt that has committed blocks every claim after it, with no window between
a check and a write. Each operation opens its own connection, so threads and processes race at SQLite's write lock
(the only arbiter that spans processes) rather than at a Python lock that only one process can see.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

BUSY_TIMEOUT_SECONDS = 30.0
"""How long a writer waits for another process's transaction before SQLite gives up (each transaction is a few
statements, so a wait this long means something is stuck)."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS proposals (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    market TEXT NOT NULL,
    side TEXT NOT NULL,
    size REAL NOT NULL,
    leverage REAL NOT NULL,
    collateral REAL NOT NULL,
    price REAL NOT NULL,
    price_bound REAL NOT NULL,
    digest TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    reason TEXT,
    fill_price REAL,
    broker_ref TEXT,
    kind TEXT NOT NULL DEFAULT 'open',
    position_id TEXT,
    context TEXT,
    claimed_by TEXT
);
CREATE INDEX IF NOT EXISTS proposals_thread ON proposals (user_id, thread_id, status);
CREATE TABLE IF NOT EXISTS halt (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    reason TEXT NOT NULL,
    actor TEXT NOT NULL,
    since TEXT NOT NULL
);
"""


def connect(path: Path) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are opened explicitly), waiting for other writers."""
    return sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None)


def use_wal(conn: sqlite3.Connection, timeout: float = BUSY_TIMEOUT_SECONDS) -> None:
    """Put the file in WAL mode (readers never wait for the writer).

    Switching the journal mode does not wait on SQLite's busy timeout: while another process creates the same new
    file, it fails at once with "database is locked". It is retried here until ``timeout``.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def initialise(path: Path) -> None:
    """Create the file and its tables if missing, in WAL mode."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with closing(connect(path)) as conn:
        use_wal(conn)
        conn.executescript(SCHEMA)
        _migrate(conn)


ADDED_COLUMNS = {"kind": "TEXT NOT NULL DEFAULT 'open'", "position_id": "TEXT", "context": "TEXT",
                 "claimed_by": "TEXT"}
"""Columns added to ``proposals`` after its first release: a file made before them gets them on open."""


def _migrate(conn: sqlite3.Connection) -> None:
    have = {row[1] for row in conn.execute("PRAGMA table_info(proposals)")}
    for column, declaration in ADDED_COLUMNS.items():
        if column not in have:
            try:
                conn.execute(f"ALTER TABLE proposals ADD COLUMN {column} {declaration}")
            except sqlite3.OperationalError as exc:  # another process added it between the read and the ALTER
                if "duplicate column" not in str(exc):
                    raise


@contextmanager
def immediate(path: Path) -> Iterator[sqlite3.Connection]:
    """One write transaction, taken with ``BEGIN IMMEDIATE`` so that what it reads cannot change before it writes.

    Committed when the block ends, rolled back if it raises: an operation that refuses changes nothing.
    """
    with closing(connect(path)) as conn:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
