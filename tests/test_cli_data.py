"""``mikey data``: backfill, show (table and PNG chart) and one ingestion round, as a user runs them."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, mikey_env, run_mikey


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


def daily_bars_stored(db: Path) -> int:
    """1d bars in the market store, read without writing (the ingesting process holds it)."""
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            return conn.execute("SELECT COUNT(*) FROM candles WHERE \"interval\" = '1d'").fetchone()[0]
    except sqlite3.OperationalError:  # not created yet
        return 0


@pytest.mark.timeout(240)
def test_ingest_killed_with_sigkill_resumes_from_the_last_stored_bar(env) -> None:
    """kill -9 a running ``mikey data ingest`` after some rounds: the next run goes on after the last bar it stored,
    not from the replay's first day (2021-01-01) again."""
    from mikey.market.replay import ReplayFeed
    from mikey.market.store import open_store
    from mikey.settings import Settings

    settings = Settings(home=Path(env["MIKEY_HOME"]))
    markets = ("BTC", "SOL")
    worker = subprocess.Popen([sys.executable, "-m", "mikey", "data", "ingest", "-s", "BTC", "-s", "SOL"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                              env=mikey_env({**env, "MIKEY_INGEST_INTERVAL_SECONDS": "0.02"}))
    try:
        deadline = time.monotonic() + 120
        while daily_bars_stored(settings.market_db) < 2 * 12:  # a dozen rounds
            assert worker.poll() is None, worker.communicate()[1]  # it must still be ingesting
            assert time.monotonic() < deadline, "no rounds stored in time"
            time.sleep(0.05)
        worker.send_signal(signal.SIGKILL)
        _, err = worker.communicate(timeout=60)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.communicate()
    assert worker.returncode == -signal.SIGKILL, err

    feed = ReplayFeed()
    bars = {m: feed.candles(m) for m in markets}
    with open_store(settings) as store:
        last = {m: store.latest_candle_time(m, "1d", source=feed.source(m)) for m in markets}
    done = [next(i for i, c in enumerate(bars[m]) if c.ts == last[m]) + 1 for m in markets]  # bars fully ingested
    assert all(12 <= n < len(bars[m]) for m, n in zip(markets, done, strict=True)), done

    again = run_mikey("data", "ingest", "--once", "-s", "BTC", "-s", "SOL", env=env)
    assert again.returncode == 0, again.stderr
    for m in markets:
        assert f"replay {m}: resuming after {last[m]:%Y-%m-%d} 00:00 UTC" in again.stdout
    with open_store(settings) as store:
        for m, n in zip(markets, done, strict=True):
            window = (bars[m][0].ts, bars[m][-1].ts)
            expected = [c.close for c in bars[m][: n + 1]]  # from 2021-01-01 to one bar past the kill, none twice
            assert [q.price for q in store.quotes(m, *window)] == expected
            assert [c.close for c in store.candles(m, "1d", *window)] == expected


@pytest.mark.parametrize("limit", ["0", "-5"])
def test_show_needs_at_least_one_row(env, limit) -> None:
    assert run_mikey("data", "backfill", "SOL", "--from", "2023-08-01", "--to", "2023-08-29", env=env).returncode == 0
    done = run_mikey("data", "show", "SOL", "-n", limit, env=env)
    assert done.returncode == 2 and "2023-08" not in done.stdout  # a usage error, not every row
    assert "Invalid value for '--limit' / '-n'" in done.stderr and "greater than or equal to 1" in done.stderr


def test_show_chart_into_a_missing_folder_is_one_clear_line(env, tmp_path) -> None:
    assert run_mikey("data", "backfill", "SOL", "--from", "2023-08-01", "--to", "2023-08-29", env=env).returncode == 0
    missing = tmp_path / "nonexistent" / "dir" / "x.png"
    done = run_mikey("data", "show", "SOL", "--chart", str(missing), env=env)
    assert done.returncode == 1, done.stderr
    assert done.stderr == f"error: --chart {missing}: the folder {missing.parent} does not exist\n"
    assert done.stdout == "" and not missing.parent.exists()


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
