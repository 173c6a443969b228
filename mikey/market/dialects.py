"""The two SQL databases the market store runs on, and what differs between them.

``mikey.market.store`` writes its SQL once, with ``?`` placeholders; a ``Dialect`` holds the rest: placeholders,
column types, the "value changed" operator of the upsert, value codecs, transactions, and which driver errors mean
refused data or a failing database.

- ``SqliteDialect``: one file in WAL mode with ``synchronous=FULL`` by default (WAL+NORMAL survives a killed process
  but may lose the last committed batches on power loss or an OS crash). Decimals are fixed-point TEXT and
  timestamps ISO-8601 TEXT with microseconds, which sorts chronologically.
- ``PostgresDialect``: psycopg 3, imported only when a ``database_url`` is used; unconstrained NUMERIC, TIMESTAMPTZ
  and JSONB, and a connection re-opened after the server dropped it.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal, get_args

from mikey.errors import ConfigError, DataUnavailable

Synchronous = Literal["FULL", "NORMAL"]


class Dialect:
    """What differs between the two databases. SQL is written once with ``?`` placeholders."""

    name: str
    decimal_type: str
    time_type: str
    json_type: str
    table_options: str
    distinct: str  # "the value changed" operator in the candle/post upsert
    explain: str
    invalid_errors: tuple[type[Exception], ...]  # the data was refused -> InvalidInput
    unavailable_errors: tuple[type[Exception], ...]  # the database failed -> DataUnavailable

    def sql(self, text: str) -> str:
        return text

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> int:
        """Run ``sql`` for every row; returns the rows inserted or changed."""
        raise NotImplementedError

    def transaction(self) -> AbstractContextManager[None]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def ts_in(self, value: datetime) -> Any:
        return value

    def ts_out(self, value: Any) -> datetime:
        return value.astimezone(UTC)

    def dec_in(self, value: Decimal | None) -> Any:
        return value

    def dec_out(self, value: Any) -> Decimal | None:
        return value

    def json_in(self, value: Any) -> Any:
        raise NotImplementedError

    def json_out(self, value: Any) -> Any:
        return value


class SqliteDialect(Dialect):
    """One file, WAL journal; ``BEGIN IMMEDIATE`` takes the write lock up front so concurrent writers queue on
    ``busy_timeout`` instead of failing with SQLITE_BUSY when a read transaction tries to upgrade."""

    name = "sqlite"
    decimal_type = "TEXT"  # NUMERIC affinity would turn 61409.93501 into a float
    time_type = "TEXT"
    json_type = "TEXT"
    table_options = " WITHOUT ROWID"  # clustered on the primary key: a range read is one sequential b-tree walk
    distinct = "IS NOT"
    explain = "EXPLAIN QUERY PLAN "
    invalid_errors = (sqlite3.IntegrityError, sqlite3.DataError)
    unavailable_errors = (sqlite3.Error,)

    def __init__(self, path: Path, *, synchronous: Synchronous = "FULL", busy_timeout_ms: int = 30_000) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise ConfigError(f"{path}: SQLite could not switch to WAL mode (got {mode!r})")
        if synchronous not in get_args(Synchronous):
            raise ConfigError(f"synchronous must be FULL or NORMAL, not {synchronous!r}")
        self._conn.execute(f"PRAGMA synchronous = {synchronous}")

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return self._conn.execute(sql, params).fetchall()

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> int:
        return self._conn.executemany(sql, rows).rowcount

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            self._conn.execute("COMMIT")  # a failing COMMIT (disk full, I/O error) rolls back too
        except BaseException:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self._conn.close()

    def ts_in(self, value: datetime) -> str:
        return value.astimezone(UTC).isoformat(timespec="microseconds")

    def ts_out(self, value: str) -> datetime:
        return datetime.fromisoformat(value)

    def dec_in(self, value: Decimal | None) -> str | None:
        return None if value is None else format(value, "f")  # fixed point: exact digits, no exponent

    def dec_out(self, value: str | None) -> Decimal | None:
        return None if value is None else Decimal(value)

    def json_in(self, value: Any) -> str:
        return json.dumps(value, sort_keys=True, separators=(",", ":"))

    def json_out(self, value: str) -> Any:
        return json.loads(value)


class PostgresDialect(Dialect):
    """psycopg 3 on one autocommit connection; each batch is an explicit transaction. psycopg is imported here only,
    so SQLite users and ``mikey --help`` never load it."""

    name = "postgresql"
    decimal_type = "NUMERIC"  # no precision or scale: every digit is kept
    time_type = "TIMESTAMPTZ"
    json_type = "JSONB"
    table_options = ""
    distinct = "IS DISTINCT FROM"
    explain = "EXPLAIN "

    def __init__(self, url: str, *, connect_timeout: float = 10.0) -> None:
        try:
            import psycopg
            from psycopg.types.json import Jsonb
        except ImportError as exc:
            raise ConfigError("database_url is set but psycopg is missing: pip install 'psycopg[binary]'") from exc
        self._psycopg, self._jsonb = psycopg, Jsonb
        self.invalid_errors = (psycopg.DataError, psycopg.IntegrityError)
        self.unavailable_errors = (psycopg.Error,)
        self._url, self._timeout, self._closed = url, max(1, int(connect_timeout)), False
        self._conn = self._connect()

    def _connect(self) -> Any:
        try:
            return self._psycopg.connect(self._url, autocommit=True, connect_timeout=self._timeout)
        except self._psycopg.Error as exc:
            raise DataUnavailable(f"market database unreachable ({redact_url(self._url)}): {exc}") from exc

    def _live(self) -> Any:
        """The connection, re-opened if the server dropped it (restart, failover): the call that saw the drop
        failed with ``DataUnavailable``; the next one works again, without restarting the ingestion service."""
        if self._conn.closed and not self._closed:
            self._conn = self._connect()
        return self._conn

    def sql(self, text: str) -> str:
        return text.replace("?", "%s")

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        cur = self._live().execute(self.sql(sql), params)
        return cur.fetchall() if cur.description else []

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> int:
        with self._live().cursor() as cur:
            cur.executemany(self.sql(sql), rows)
            return max(cur.rowcount, 0)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._live().transaction():
            yield

    def close(self) -> None:
        self._closed = True
        self._conn.close()

    def json_in(self, value: Any) -> Any:
        return self._jsonb(value)


def redact_url(url: str) -> str:
    """The URL without its password, for error messages."""
    scheme, sep, rest = url.partition("://")
    if "@" not in rest:
        return url
    creds, _, host = rest.rpartition("@")
    return f"{scheme}{sep}{creds.split(':', 1)[0]}:***@{host}" if ":" in creds else url
