"""``mikey data``: backfill, show (table and PNG chart) and one ingestion round, as a user runs them."""

from __future__ import annotations

import pytest

from tests.conftest import run_mikey


@pytest.fixture
def env(isolated_env):
    return {"MIKEY_HOME": str(isolated_env)}


def test_backfill_is_idempotent_and_show_prints_exact_closes(env, tmp_path) -> None:
    first = run_mikey("data", "backfill", "sol", "--from", "2023-08-01", "--to", "2023-08-29", env=env)
    assert first.returncode == 0, first.stderr
    assert "SOL 1d: 29 candles fetched, 29 new or changed rows stored" in first.stdout
    again = run_mikey("data", "backfill", "SOL-PERP", "--from", "2023-08-01", "--to", "2023-08-29", env=env)
    assert "29 candles fetched, 0 new or changed rows stored" in again.stdout
    chart = tmp_path / "sol.png"
    shown = run_mikey("data", "show", "SOL", "-n", "2", "--chart", str(chart), env=env)
    assert shown.returncode == 0, shown.stderr
    assert "2023-08-29 00:00" in shown.stdout and "21.780764" in shown.stdout and "20.557100" in shown.stdout
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and chart.stat().st_size > 10_000


def test_ingest_once_stores_replayed_quotes(env) -> None:
    done = run_mikey("data", "ingest", "--once", "-s", "ETH", env=env)
    assert done.returncode == 0, done.stderr
    row = next(line for line in done.stdout.splitlines() if "replay" in line)
    assert row.split("│")[2:6] == [" 1    ", " 1     ", " 1      ", " 0        "]


@pytest.mark.parametrize(("args", "message"), [
    (["data", "backfill", "DOGE", "--from", "2023-01-01", "--to", "2023-01-02"], "error: unknown market 'DOGE'"),
    (["data", "backfill", "SOL", "--from", "2023-02-01", "--to", "2023-01-01"], "error: --from must not be after"),
    (["data", "backfill", "SOL", "--from", "yesterday", "--to", "2023-01-01"], "error: --from must be a date"),
    (["data", "backfill", "SOL", "--from", "2023-01-01", "--to", "2023-01-02", "-i", "5m"], "error: --interval must"),
    (["data", "backfill", "SOL", "--from", "2023-01-01", "--to", "2023-01-02", "-i", "1h"], "error: the bundled"),
    (["data", "show", "SOL"], "error: no 1d candles stored for SOL"),
])
def test_bad_input_is_one_clear_line(env, args, message) -> None:
    done = run_mikey(*args, env=env)
    assert done.returncode == 1 and done.stderr.startswith(message), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
