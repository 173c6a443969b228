"""The alert store: add, list, soft delete, and a firing claimed once however many threads or processes race."""

from __future__ import annotations

import multiprocessing
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mikey.alerts.rules import AlertRule
from mikey.alerts.store import AlertStore
from mikey.errors import NotFound

AS_OF = datetime(2022, 6, 13, tzinfo=UTC)


def rule(rule_id: str = "abc123", user_id: str = "local", **kwargs) -> AlertRule:
    fields = {"id": rule_id, "user_id": user_id, "thread_id": "t", "market": "BTC", "kind": "price_below",
              "threshold": 25_000.0, "text": "ping me if btc drops below 25k",
              "created_at": datetime(2026, 1, 1, tzinfo=UTC), "reference": 27_727.39} | kwargs
    return AlertRule(**fields)


def test_add_get_list_and_round_trip(tmp_path: Path) -> None:
    store = AlertStore(tmp_path / "alerts.sqlite")
    first = store.add(rule("a1"))
    store.add(rule("b2", user_id="other"))
    store.add(rule("c3", kind="indicator_above", market="SOL", indicator="rsi", threshold=70.0))
    assert store.get("a1") == first  # every field, times in UTC, survives the file
    assert [r.id for r in store.list("local")] == ["a1", "c3"]
    assert [r.id for r in store.list()] == ["a1", "b2", "c3"]
    with pytest.raises(NotFound):
        store.get("zz")


def test_a_colliding_id_is_replaced(tmp_path: Path) -> None:
    store = AlertStore(tmp_path / "alerts.sqlite")
    store.add(rule("same"))
    second = store.add(rule("same", threshold=20_000.0))
    assert second.id != "same" and store.get(second.id).threshold == 20_000.0


def test_delete_is_soft_and_only_the_owners(tmp_path: Path) -> None:
    store = AlertStore(tmp_path / "alerts.sqlite")
    store.add(rule("a1"))
    with pytest.raises(NotFound):
        store.delete("a1", user_id="someone else")
    deleted = store.delete("a1", user_id="local")
    assert deleted.status == "deleted" and store.list("local") == []
    assert [r.id for r in store.list("local", statuses=("active", "fired", "deleted"))] == ["a1"]
    with pytest.raises(NotFound):
        store.delete("a1", user_id="local")
    assert store.mark_fired("a1", value=1.0, as_of=AS_OF) is None  # a deleted rule never fires


def test_mark_fired_then_delivery(tmp_path: Path) -> None:
    store = AlertStore(tmp_path / "alerts.sqlite")
    store.add(rule("a1"))
    now = datetime(2026, 1, 2, tzinfo=UTC)
    fired = store.mark_fired("a1", value=22_487.39, as_of=AS_OF, now=now)
    assert (fired.status, fired.fired_at, fired.fired_value, fired.fired_as_of, fired.delivery) == \
        ("fired", now, 22_487.39, AS_OF, "pending")
    assert store.mark_fired("a1", value=22_000.0, as_of=AS_OF) is None
    done = store.record_delivery("a1", "failed", "webhook http://127.0.0.1:9 timed out, 3 attempts")
    assert (done.status, done.delivery, done.fired_value) == ("fired", "failed", 22_487.39)
    assert "timed out" in done.delivery_error


def test_one_of_many_threads_fires_a_rule(tmp_path: Path) -> None:
    path = tmp_path / "alerts.sqlite"
    AlertStore(path).add(rule("a1"))
    start = threading.Barrier(16)
    won: list[AlertRule] = []

    def claim(i: int) -> None:
        store = AlertStore(path)
        start.wait()
        if (fired := store.mark_fired("a1", value=20_000.0 + i, as_of=AS_OF)) is not None:
            won.append(fired)

    threads = [threading.Thread(target=claim, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1
    assert AlertStore(path).get("a1").fired_value == won[0].fired_value


def _claim_in_process(path: str, i: int, start, results) -> None:  # noqa: ANN001 (multiprocessing proxies)
    store = AlertStore(Path(path))
    start.wait()
    fired = store.mark_fired("a1", value=20_000.0 + i, as_of=AS_OF)
    results.put(None if fired is None else fired.fired_value)


def test_one_of_many_processes_fires_a_rule(tmp_path: Path) -> None:
    path = tmp_path / "alerts.sqlite"
    AlertStore(path).add(rule("a1"))
    ctx = multiprocessing.get_context("spawn")
    start, results = ctx.Barrier(6), ctx.Queue()
    procs = [ctx.Process(target=_claim_in_process, args=(str(path), i, start, results)) for i in range(6)]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    winners = [v for v in outcomes if v is not None]
    assert len(winners) == 1 and AlertStore(path).get("a1").fired_value == winners[0]
