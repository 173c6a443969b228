"""The cost ledger: one row per model call attempt (role, group, deployment, prompt, tokens, cost, latency, cache,
outcome).

Stored in SQLite (``settings.ledger_db``); a ledger file from before a column existed gains it when opened
(``MIGRATIONS``), its old rows holding NULL there. Successful calls are written by the chat model as soon as the
router returns, so a budget check right after sees them; failed attempts inside the router's retries and fallbacks
arrive through a LiteLLM callback (``LedgerCallback``).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS llm_calls (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    day TEXT NOT NULL,
    role TEXT NOT NULL,
    model_group TEXT NOT NULL,
    deployment TEXT NOT NULL,
    model TEXT NOT NULL,
    tokens_in INTEGER NOT NULL DEFAULT 0,
    tokens_out INTEGER NOT NULL DEFAULT 0,
    cost_usd REAL NOT NULL DEFAULT 0,
    latency_ms REAL NOT NULL DEFAULT 0,
    cache_hit INTEGER NOT NULL DEFAULT 0,
    outcome TEXT NOT NULL,
    error TEXT,
    thread_id TEXT,
    prompt TEXT
);
CREATE INDEX IF NOT EXISTS llm_calls_day ON llm_calls (day);
CREATE INDEX IF NOT EXISTS llm_calls_thread ON llm_calls (thread_id);
"""

# Columns added after the first release, with their definitions: ``ALTER TABLE ADD COLUMN`` when a file lacks one.
MIGRATIONS = {"prompt": "TEXT"}

USAGE_KEYS = ("day", "model_group", "role")


@dataclass(frozen=True)
class CallRecord:
    """One attempt at one deployment."""

    role: str
    model_group: str
    deployment: str
    model: str
    outcome: str  # "ok" or "error"
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    latency_ms: float = 0.0
    cache_hit: bool = False
    error: str | None = None
    thread_id: str | None = None
    prompt: str | None = None
    """The versioned prompt the messages were rendered from, ``name@version`` (e.g. ``chat.analyze@2``)."""
    ts: float = 0.0


def utc_day(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).date().isoformat()


class Ledger:
    """Append-only SQLite ledger, safe to share between threads."""

    def __init__(self, path: Path | str) -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        # A commit waits for the WAL write, not for its fsync (a crash of the process loses nothing; a power cut may
        # lose the last calls): an fsync per model call serialised concurrent callers at ~3 ms each.
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(SCHEMA)
        self._migrate()
        self._lock = threading.Lock()

    def _migrate(self) -> None:
        """Add the columns an older ledger file lacks (another process opening it may add them first)."""
        for column, definition in MIGRATIONS.items():
            present = {row[1] for row in self._conn.execute("PRAGMA table_info(llm_calls)")}
            if column in present:
                continue
            try:
                self._conn.execute(f"ALTER TABLE llm_calls ADD COLUMN {column} {definition}")
            except sqlite3.OperationalError as exc:
                if "duplicate column" not in str(exc):
                    raise

    def record(self, call: CallRecord) -> None:
        row = asdict(call)
        row["ts"] = row["ts"] or time.time()
        row["day"] = utc_day(row["ts"])
        row["cache_hit"] = int(row["cache_hit"])
        columns = ", ".join(row)
        with self._lock:
            self._conn.execute(f"INSERT INTO llm_calls ({columns}) VALUES ({', '.join('?' * len(row))})",
                               list(row.values()))

    def spent(self, *, thread_id: str | None = None, day: str | None = None) -> float:
        """USD spent by one thread, or on one UTC day."""
        where, args = [], []
        if thread_id is not None:
            where.append("thread_id = ?")
            args.append(thread_id)
        if day is not None:
            where.append("day = ?")
            args.append(day)
        sql = "SELECT COALESCE(SUM(cost_usd), 0) FROM llm_calls" + (f" WHERE {' AND '.join(where)}" if where else "")
        with self._lock:
            return float(self._conn.execute(sql, args).fetchone()[0])

    def calls(self) -> list[CallRecord]:
        """Every row, oldest first."""
        fields = [f for f in CallRecord.__dataclass_fields__]
        with self._lock:
            rows = self._conn.execute(f"SELECT {', '.join(fields)} FROM llm_calls ORDER BY id").fetchall()
        return [CallRecord(**{**dict(zip(fields, r, strict=True)), "cache_hit": bool(r[fields.index("cache_hit")])})
                for r in rows]

    def usage(self) -> list[dict[str, Any]]:
        """Calls, tokens and cost grouped by day, group and role, newest day first."""
        keys = ", ".join(USAGE_KEYS)
        sql = (f"SELECT {keys}, COUNT(*), SUM(outcome = 'ok'), SUM(cache_hit), SUM(tokens_in), SUM(tokens_out), "
               f"SUM(cost_usd) FROM llm_calls GROUP BY {keys} ORDER BY day DESC, model_group, role")
        with self._lock:
            rows = self._conn.execute(sql).fetchall()
        names = (*USAGE_KEYS, "calls", "ok", "cache_hits", "tokens_in", "tokens_out", "cost_usd")
        return [dict(zip(names, r, strict=True)) for r in rows]

    def close(self) -> None:
        with self._lock:
            self._conn.close()


_LEDGERS: dict[str, Ledger] = {}
_CALLBACK_LOCK = threading.Lock()
_callback_installed = False


def attach(ledger: Ledger) -> str:
    """Route LiteLLM's failure reports for requests tagged with the returned key to ``ledger``.

    LiteLLM's callbacks are process-wide, so one callback is installed once and finds each request's ledger by the
    ``ledger`` key in the request metadata; several chat models (and tests) can each keep their own ledger.
    """
    global _callback_installed
    key = f"ledger-{id(ledger)}"
    _LEDGERS[key] = ledger
    with _CALLBACK_LOCK:
        if not _callback_installed:
            from mikey.router.providers import import_litellm

            litellm = import_litellm()
            litellm.logging_callback_manager.add_litellm_callback(_failure_callback())
            _callback_installed = True
    return key


def detach(key: str) -> None:
    """Stop routing failure reports to the ledger ``attach`` returned ``key`` for (the chat model's close)."""
    _LEDGERS.pop(key, None)


def _failure_callback() -> Any:
    from litellm.integrations.custom_logger import CustomLogger

    from mikey.router.providers import describe

    class LedgerCallback(CustomLogger):
        def _failed(self, kwargs: dict[str, Any], start: Any, end: Any) -> None:
            params = kwargs.get("litellm_params") or {}
            meta = params.get("metadata") or {}
            ledger = _LEDGERS.get(str(meta.get("ledger")))
            if ledger is None:
                return
            info = params.get("model_info") or meta.get("model_info") or {}
            error = kwargs.get("exception")
            ledger.record(CallRecord(
                role=str(meta.get("role") or "unknown"),
                model_group=str(meta.get("model_group") or "?"),
                deployment=str(info.get("id") or "?"),
                model=str(kwargs.get("model") or "?"),
                outcome="error",
                error=describe(error) if error else None,  # never the provider's text: it can carry the key
                latency_ms=_ms(start, end),
                thread_id=meta.get("thread_id"),
                prompt=meta.get("prompt_ref"),  # "prompt" is LiteLLM's own key (Langfuse prompt objects)
            ))

        def log_failure_event(self, kwargs, response_obj, start_time, end_time):  # noqa: D102
            self._failed(kwargs, start_time, end_time)

        async def async_log_failure_event(self, kwargs, response_obj, start_time, end_time):  # noqa: D102
            self._failed(kwargs, start_time, end_time)

    return LedgerCallback()


def _ms(start: Any, end: Any) -> float:
    try:
        return (end - start).total_seconds() * 1000
    except (TypeError, AttributeError):
        return 0.0
