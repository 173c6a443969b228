"""Chat threads on PostgreSQL, stored once: each thread keeps only its latest checkpoint (see ``checkpoints``).

After each checkpoint is committed, ``PostgresSaver.prune(strategy="keep_latest")`` deletes the thread's older
checkpoints with their writes and the blobs only they referenced (the ``history`` blob of every earlier turn), in a
transaction of its own on one snapshot, so a turn saved meanwhile by another replica is neither seen nor deleted.
PostgreSQL's autovacuum makes the deleted rows' space reusable. Kept apart from the SQLite saver because importing
psycopg costs a SQLite user about 0.2 s.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import ChannelVersions, Checkpoint, CheckpointMetadata
from langgraph.checkpoint.postgres import PostgresSaver
from psycopg.rows import dict_row

from mikey.errors import ConfigError

log = logging.getLogger(__name__)


class KeepLatestPostgresSaver(PostgresSaver):
    """A ``PostgresSaver`` that, after saving a checkpoint, prunes its thread to the latest checkpoint."""

    def put(self, config: RunnableConfig, checkpoint: Checkpoint, metadata: CheckpointMetadata,
            new_versions: ChannelVersions) -> RunnableConfig:
        saved = super().put(config, checkpoint, metadata, new_versions)  # committed before anything is deleted
        thread_id = saved["configurable"]["thread_id"]
        try:
            self.prune([thread_id], strategy="keep_latest")
        except (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected) as exc:
            # Another replica changed or pruned this thread at the same moment; nothing was deleted, the turn is
            # saved, and the thread's next checkpoint prunes what is left.
            log.info("thread %s not pruned this turn (%s); the next turn will", thread_id, type(exc).__name__)
        return saved


@contextmanager
def open_postgres_saver(url: str, serde: Any) -> Iterator[KeepLatestPostgresSaver]:
    """A ``KeepLatestPostgresSaver`` on ``url``, its tables created or migrated."""
    if not url.startswith(("postgresql://", "postgres://")):
        raise ConfigError("MIKEY_CHECKPOINT_URL must be a postgresql:// URL")
    try:
        conn = psycopg.connect(url, autocommit=True, prepare_threshold=0, row_factory=dict_row)
    except psycopg.Error as exc:
        raise ConfigError(f"cannot reach the checkpoint database: {str(exc).splitlines()[0]}") from exc
    with conn:
        saver = KeepLatestPostgresSaver(conn, serde=serde)
        saver.setup()  # idempotent: creates or migrates the checkpoint tables
        yield saver
