"""Chat threads on SQLite, stored once: each thread keeps only its latest checkpoint.

A chat turn writes one checkpoint (durability ``"exit"``), and each checkpoint holds the whole ``history`` channel.
Kept forever, a thread of n turns would store n(n+1)/2 turns: one 679-turn thread took 170 MB, a 1,000-turn one
about 100 MB. MIKEY reads only a thread's latest state (the next turn, ``mikey history``, ``GET /v1/chat/{id}``), so
once a new checkpoint is committed the thread's older ones and their writes are deleted, and the thread stores its
history once: storage grows linearly with its length. The deletion is a second transaction after the new
checkpoint's, so a crash at any moment leaves the previous turn or the new one, never neither; checkpoints a crash
left behind go with the next turn's. What is given up is LangGraph's time travel: ``get_state_history`` lists the
latest checkpoint only.

The freed pages go back to the file: a new database is created with ``auto_vacuum = INCREMENTAL`` and each prune
ends with ``PRAGMA incremental_vacuum``; a database from before pruning is pruned and rewritten (``VACUUM``) once, on
first open. ``checkpoints_postgres`` prunes the same way on PostgreSQL. (Pruning suits ``history``, a plain reducer
channel; a LangGraph ``DeltaChannel`` rebuilds its value from older checkpoints and could not be pruned so.)
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import ChannelVersions, Checkpoint, CheckpointMetadata
from langgraph.checkpoint.sqlite import SqliteSaver

INCREMENTAL = 2
"""``PRAGMA auto_vacuum`` value of incremental vacuum."""

_PRUNE_SQL = (
    "DELETE FROM writes WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id < ?",
    "DELETE FROM checkpoints WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id < ?",
    # the kept checkpoint's parent is gone: say so rather than point at nothing
    "UPDATE checkpoints SET parent_checkpoint_id = NULL "
    "WHERE thread_id = ? AND checkpoint_ns = ? AND checkpoint_id = ?",
)


class KeepLatestSqliteSaver(SqliteSaver):
    """A ``SqliteSaver`` that, after saving a checkpoint, deletes the older checkpoints of its thread and namespace."""

    def put(self, config: RunnableConfig, checkpoint: Checkpoint, metadata: CheckpointMetadata,
            new_versions: ChannelVersions) -> RunnableConfig:
        saved = super().put(config, checkpoint, metadata, new_versions)  # committed before anything is deleted
        keep = saved["configurable"]
        with self.cursor() as cur:
            _prune(cur, keep["thread_id"], keep["checkpoint_ns"], keep["checkpoint_id"])
        return saved


def _prune(cur: sqlite3.Cursor, thread_id: str, checkpoint_ns: str, keep_id: str) -> None:
    """Delete the checkpoints (and writes) of one thread and namespace older than ``keep_id``; free their pages.

    Checkpoint IDs are time-ordered (uuid6), the order ``SqliteSaver.get_tuple`` reads the latest by.
    """
    for sql in _PRUNE_SQL:
        cur.execute(sql, (str(thread_id), checkpoint_ns, keep_id))
    # Commits the deletions, then frees every page: sqlite3's execute() would step the pragma once, freeing one.
    cur.executescript("PRAGMA incremental_vacuum")


@contextmanager
def open_sqlite_saver(path: Path, serde: Any) -> Iterator[KeepLatestSqliteSaver]:
    """A ``KeepLatestSqliteSaver`` on the database at ``path`` (created if missing, compacted once if old)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, check_same_thread=False)
    try:
        saver = KeepLatestSqliteSaver(conn, serde=serde)
        _reclaim_freed_pages(saver)
        yield saver
    finally:
        conn.close()


def _reclaim_freed_pages(saver: KeepLatestSqliteSaver) -> None:
    """Make the file give freed pages back: incremental auto-vacuum, set before the tables exist.

    A database written before pruning (every checkpoint of every thread kept, no auto-vacuum) is pruned to each
    thread's latest checkpoint and rewritten once; the rewrite also switches it to incremental auto-vacuum.
    """
    conn = saver.conn
    if conn.execute("PRAGMA auto_vacuum").fetchone()[0] == INCREMENTAL:
        return
    old = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'checkpoints'").fetchone()
    conn.execute(f"PRAGMA auto_vacuum = {INCREMENTAL}")  # takes effect now on an empty file, with VACUUM otherwise
    if old is None:
        return
    with saver.cursor() as cur:
        latest = cur.execute("SELECT thread_id, checkpoint_ns, MAX(checkpoint_id) FROM checkpoints "
                             "GROUP BY thread_id, checkpoint_ns").fetchall()
        for thread_id, checkpoint_ns, keep_id in latest:
            _prune(cur, thread_id, checkpoint_ns, keep_id)
    conn.execute("VACUUM")
