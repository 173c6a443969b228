"""The execution database: one SQLite file (``settings.execution_db``) shared by every MIKEY process on the machine.

Proposals and the kill switch live in the same file so that one ``BEGIN IMMEDIATE`` transaction can read the halt
and move a proposal to ``submitted``: a halt that has committed blocks every claim after it, with no window between
a check and a write. Each operation opens its own connection, so threads and processes race at SQLite's write lock
(the only arbiter that spans processes) rather than at a Python lock that only one process can see.
"""

from __future__ import annotations

import sqlite3
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
    broker_ref TEXT
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


def initialise(path: Path) -> None:
    """Create the file and its tables if missing, in WAL mode (readers never wait for the writer)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with closing(connect(path)) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.executescript(SCHEMA)


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
