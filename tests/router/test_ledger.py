"""The ledger file: rows carry the prompt's name@version, and a file written before that column existed still opens,
reports and takes new rows."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from mikey.router.ledger import CallRecord, Ledger
from tests.conftest import run_mikey

# llm_calls as the ledger created it before the prompt column (commit 21027a3)
OLD_SCHEMA = """
CREATE TABLE llm_calls (
    id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, day TEXT NOT NULL, role TEXT NOT NULL,
    model_group TEXT NOT NULL, deployment TEXT NOT NULL, model TEXT NOT NULL,
    tokens_in INTEGER NOT NULL DEFAULT 0, tokens_out INTEGER NOT NULL DEFAULT 0, cost_usd REAL NOT NULL DEFAULT 0,
    latency_ms REAL NOT NULL DEFAULT 0, cache_hit INTEGER NOT NULL DEFAULT 0, outcome TEXT NOT NULL, error TEXT,
    thread_id TEXT
);
CREATE INDEX llm_calls_day ON llm_calls (day);
CREATE INDEX llm_calls_thread ON llm_calls (thread_id);
INSERT INTO llm_calls (ts, day, role, model_group, deployment, model, tokens_in, tokens_out, cost_usd, outcome,
                       thread_id)
VALUES (1693267200, '2023-08-29', 'analyze', 'gpt-4', 'gpt-4#0', 'openai/gpt-4o', 120, 40, 0.0021, 'ok', 't');
"""


def old_ledger(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    try:
        conn.executescript(OLD_SCHEMA)
    finally:
        conn.close()
    return path


def columns(path: Path) -> list[str]:
    conn = sqlite3.connect(path)
    try:
        return [row[1] for row in conn.execute("PRAGMA table_info(llm_calls)")]
    finally:
        conn.close()


def test_prompt_round_trips(ledger) -> None:
    ledger.record(CallRecord(role="analyze", model_group="offline", deployment="offline#0", model="m", outcome="ok",
                             prompt="chat.analyze@2"))
    ledger.record(CallRecord(role="analyze", model_group="offline", deployment="offline#0", model="m", outcome="ok"))
    assert [r.prompt for r in ledger.calls()] == ["chat.analyze@2", None]


def test_a_ledger_from_before_the_prompt_column_is_migrated_on_open(tmp_path) -> None:
    """The column is added once (opening again changes nothing); old rows keep their values with no prompt."""
    path = old_ledger(tmp_path / "ledger.sqlite")
    assert "prompt" not in columns(path)

    for _ in range(2):
        Ledger(path).close()
    assert columns(path).count("prompt") == 1

    ledger = Ledger(path)
    try:
        ledger.record(CallRecord(role="understand", model_group="local", deployment="local#0", model="m",
                                 outcome="ok", thread_id="t", prompt="chat.understand@1"))
        old, new = ledger.calls()
        assert (old.role, old.model_group, old.tokens_in, old.cost_usd, old.prompt) == (
            "analyze", "gpt-4", 120, 0.0021, None)
        assert new.prompt == "chat.understand@1"
        assert ledger.spent(thread_id="t") == 0.0021
        assert [(u["day"], u["model_group"], u["calls"]) for u in ledger.usage()][-1] == ("2023-08-29", "gpt-4", 1)
    finally:
        ledger.close()


def test_mikey_usage_reads_an_old_ledger(isolated_env) -> None:
    from mikey.settings import Settings

    old_ledger(Settings(home=isolated_env).ledger_db)
    done = run_mikey("usage", env={"MIKEY_HOME": str(isolated_env)})
    assert done.returncode == 0, done.stderr
    assert "2023-08-29" in done.stdout and "total cost: $0.002100 over 1 calls" in done.stdout
