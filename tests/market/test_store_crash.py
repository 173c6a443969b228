"""Crash safety: SIGKILL an ingesting process mid-batch, then ingest again. No committed row may be lost, none
duplicated, and no half batch may be visible.

This file is also the ingesting process: ``python test_store_crash.py --home DIR [--url URL]`` stores the quotes
of ``expected_quotes()`` in committed batches and prints ``committed N`` after each commit.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from mikey.domain import Quote
from mikey.settings import Settings

BATCH = 500
BATCHES = 120
T0 = datetime(2024, 1, 1, tzinfo=UTC)
NETGUARD_DIR = Path(__file__).resolve().parents[1] / "netguard"


def expected_quotes() -> list[Quote]:
    """Deterministic quotes, so every run (killed or not) writes the very same rows."""
    return [Quote(symbol=("SOL", "BTC", "ETH")[i % 3], source="pyth", as_of=T0 + timedelta(seconds=i // 3),
                  price=Decimal(f"{100 + i % 977}.{i:06d}1"), conf=Decimal(f"0.0{i % 10}"))
            for i in range(BATCH * BATCHES)]


def ingest(home: Path, url: str | None) -> None:
    from mikey.market.store import open_store

    quotes = expected_quotes()
    with open_store(Settings(home=home, database_url=url)) as store:
        for n in range(BATCHES):
            store.upsert_quotes(quotes[n * BATCH:(n + 1) * BATCH])
            print(f"committed {n + 1}", flush=True)
    print("done", flush=True)


def start_ingest(home: Path, url: str | None) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(NETGUARD_DIR)}  # the network guard, in the child too
    args = [sys.executable, __file__, "--home", str(home), *(["--url", url] if url else [])]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def committed_batches(lines: list[str]) -> int:
    return max((int(line.split()[1]) for line in lines if line.startswith("committed ")), default=0)


@pytest.mark.timeout(240)
def test_sigkill_mid_ingestion_loses_and_duplicates_nothing(store_settings: Settings) -> None:
    from mikey.market.store import open_store

    home, url = store_settings.home, store_settings.database_url
    worker = start_ingest(home, url)
    lines: list[str] = []
    assert worker.stdout is not None
    for line in worker.stdout:  # let a few batches commit, then kill it while it writes the next
        lines.append(line.strip())
        if committed_batches(lines) >= 8:
            worker.send_signal(signal.SIGKILL)
            break
    rest, err = worker.communicate(timeout=60)
    lines += rest.splitlines()
    assert worker.returncode == -signal.SIGKILL, (worker.returncode, err)
    committed = committed_batches(lines)
    assert 8 <= committed < BATCHES and "done" not in lines, "the kill must land mid-ingestion"

    with open_store(store_settings) as store:
        stored = store.counts()["quotes"]
        # every reported commit survived; at most the batch whose commit raced the kill is there too; no half batch
        assert stored % BATCH == 0, stored
        assert committed * BATCH <= stored <= (committed + 1) * BATCH, (committed, stored)

    again = start_ingest(home, url)
    out, err = again.communicate(timeout=180)
    assert again.returncode == 0 and out.splitlines()[-1] == "done", err

    expected = expected_quotes()
    with open_store(store_settings) as store:
        assert store.counts()["quotes"] == len(expected)
        window = (T0, T0 + timedelta(days=1))
        stored_rows = [q for s in ("BTC", "ETH", "SOL") for q in store.quotes(s, *window)]
    keys = [(q.symbol, q.source, q.as_of) for q in stored_rows]
    assert len(keys) == len(set(keys)) == len(expected)
    by_key = {(q.symbol, q.source, q.as_of): (q.price, q.conf) for q in expected}
    assert all(by_key[(q.symbol, q.source, q.as_of)] == (q.price, q.conf) for q in stored_rows)
    if store_settings.database_url is None:
        import sqlite3

        with sqlite3.connect(store_settings.market_db) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--url", default=None)
    cli = parser.parse_args()
    ingest(cli.home, cli.url)
