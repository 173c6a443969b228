"""Chat threads stored once (``mikey.agents.checkpoints``, ``checkpoints_postgres``), on real SQLite and PostgreSQL: a
thread's storage grows linearly with its length, every message stays readable and the thread resumes in a new
process, and neither a turn cut short nor a crash between saving and pruning loses a turn."""

from __future__ import annotations

import secrets
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import psycopg
import pytest
from langgraph.checkpoint.postgres import PostgresSaver
from langgraph.checkpoint.sqlite import SqliteSaver

from mikey.agents import checkpoints
from mikey.agents.chat import _STATE_TYPES, build_chat_graph, open_checkpointer, run_turn, thread_history
from mikey.agents.checkpoints import INCREMENTAL, KeepLatestSqliteSaver
from mikey.agents.checkpoints_postgres import KeepLatestPostgresSaver
from mikey.agents.state import ChatContext
from mikey.domain import Answer, Facts, GroundingReport, Intent, RiskAssessment, TradeProposal
from mikey.market.replay import ReplayFeed
from mikey.router.chat_model import RouterChatModel
from mikey.settings import Settings
from tests.conftest import run_mikey
from tests.postgres import fresh_database

SHORT, LONG = 100, 1_000
MAX_RATIO = 12
VACUUM_EVERY = 10
"""Turns between two VACUUMs on PostgreSQL, standing in for autovacuum: it runs every minute (and whenever a fifth
of a table is dead), a handful of turns at a person's pace; this test runs a thousand turns in under a minute."""


def offline(settings: Settings, **changes) -> ChatContext:
    """The offline group and the rule parser: a greeting gets the rules answer and costs no model call."""
    settings = settings.model_copy(update={"understand_with_model": False})
    return ChatContext(settings=settings, feed=ReplayFeed(), chat_model=RouterChatModel(settings), group="offline",
                       **changes)


def greet(graph, context: ChatContext, thread_id: str, turns: int,
          every: Callable[[], None] | None = None) -> list[str]:
    """``turns`` greetings on ``thread_id``, each carrying 64 random bytes in hex that no compression can take away
    (PostgreSQL compresses what it stores); ``every`` runs after each ``VACUUM_EVERY`` turns. The messages sent."""
    sent = []
    for turn in range(1, turns + 1):
        message = f"hi there, {secrets.token_hex(64)}"
        assert run_turn(graph, context, message, thread_id).group == "rules"
        sent.append(message)
        if every is not None and turn % VACUUM_EVERY == 0:
            every()
    return sent


def count_checkpoints(settings: Settings, thread_id: str) -> int:
    with open_checkpointer(settings) as saver:
        return len(list(saver.list({"configurable": {"thread_id": thread_id}})))


def stored_history(settings: Settings, thread_id: str) -> list:
    """The thread as a new process reads it: a new connection, a new graph."""
    with open_checkpointer(settings) as saver:
        return thread_history(build_chat_graph(saver), thread_id)


class SqliteStore:
    """A home of its own; storage is the database file (with any WAL), measured with the connection closed."""

    def __init__(self, settings: Settings, name: str) -> None:
        self.settings = settings.model_copy(update={"home": settings.home / name})
        self.env = {"MIKEY_HOME": str(self.settings.home)}

    def vacuum(self) -> None:
        """Nothing to do: the file reuses and returns freed pages itself."""

    def size(self) -> int:
        return sum(f.stat().st_size for f in self.settings.home.glob("state.sqlite*"))


class PostgresStore:
    """A database of its own; storage is every table's ``pg_total_relation_size`` (heap, TOAST, indexes)."""

    def __init__(self, settings: Settings, url: str) -> None:
        self.url = url
        self.settings = settings.model_copy(update={"checkpoint_url": url})
        self.env = {"MIKEY_HOME": str(settings.home), "MIKEY_CHECKPOINT_URL": url}

    def vacuum(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute("VACUUM checkpoints, checkpoint_blobs, checkpoint_writes")

    def size(self) -> int:
        self.vacuum()
        with psycopg.connect(self.url, autocommit=True) as conn:
            return conn.execute("SELECT sum(pg_total_relation_size(oid))::bigint FROM pg_class "
                                "WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace").fetchone()[0]


@contextmanager
def store(request: pytest.FixtureRequest, settings: Settings, backend: str, name: str) -> Iterator:
    if backend == "sqlite":
        yield SqliteStore(settings, name)
        return
    with fresh_database(request.getfixturevalue("postgres_server")) as url:
        yield PostgresStore(settings, url)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_thousand_turn_thread_stores_linearly_and_resumes_in_a_new_process(request, settings, backend) -> None:
    """Storage of a 1,000-turn thread against a 100-turn one: at most 12 times (every checkpoint kept: about 60 on
    PostgreSQL, 100 on SQLite). The long thread keeps all its 2,000 messages, and `mikey chat` continues it."""
    sizes = {}
    for turns in (SHORT, LONG):
        with store(request, settings, backend, f"thread-{turns}") as where:
            with open_checkpointer(where.settings) as saver:
                sent = greet(build_chat_graph(saver), offline(where.settings), "t", turns, every=where.vacuum)
            sizes[turns] = where.size()
            if turns == LONG:
                history = stored_history(where.settings, "t")
                assert [t["role"] for t in history] == ["user", "assistant"] * LONG
                assert [t["content"] for t in history[::2]] == sent
                assert all(t["group"] == "rules" for t in history[1::2])
                assert count_checkpoints(where.settings, "t") == 1
                again = run_mikey("chat", "--no-stream", "-m", "offline", "-t", "t", "hello again",
                                  env={**where.env, "MIKEY_MEMORY_ENABLED": "false"})
                assert again.returncode == 0, again.stderr
                assert f"continuing thread t ({2 * LONG} earlier messages)" in again.stdout
                assert "Hi, I'm MIKEY" in again.stdout
                history = stored_history(where.settings, "t")
                assert len(history) == 2 * LONG + 2 and history[-2]["content"] == "hello again"
                assert count_checkpoints(where.settings, "t") == 1
    ratio = sizes[LONG] / sizes[SHORT]
    print(f"\n{backend}: {SHORT} turns {sizes[SHORT]:,} B, {LONG} turns {sizes[LONG]:,} B, ratio {ratio:.2f}")
    assert ratio <= MAX_RATIO, f"{backend} thread storage is not linear: {sizes}"


@pytest.fixture(params=["sqlite", "postgres"])
def backend_settings(request, settings) -> Settings:
    if request.param == "postgres":
        return settings.model_copy(update={"checkpoint_url": request.getfixturevalue("postgres_url")})
    return settings


class CrashingMemory:
    """A memory whose first read fails with an error the graph does not expect: the turn dies mid-way."""

    def preferences(self, user_id: str) -> dict[str, str]:
        raise RuntimeError("the process died here")


def test_a_turn_cut_short_leaves_the_thread_as_it_was(backend_settings) -> None:
    with open_checkpointer(backend_settings) as saver:
        graph = build_chat_graph(saver)
        sent = greet(graph, offline(backend_settings), "t", 3)
        with pytest.raises(RuntimeError, match="the process died here"):
            run_turn(graph, offline(backend_settings, memory=CrashingMemory()), "hi, this turn dies", "t")
    history = stored_history(backend_settings, "t")
    assert [t["content"] for t in history[::2]] == sent
    assert count_checkpoints(backend_settings, "t") == 1


def test_checkpoints_a_crash_left_before_pruning_go_with_the_next_turn(backend_settings, monkeypatch) -> None:
    """A process that died after saving a turn and before pruning leaves older checkpoints behind (saved here by the
    savers' unpruned ``put``); the next turn deletes them, and on PostgreSQL every blob only they used."""
    with monkeypatch.context() as crashed:
        crashed.setattr(KeepLatestSqliteSaver, "put", SqliteSaver.put)
        crashed.setattr(KeepLatestPostgresSaver, "put", PostgresSaver.put)
        with open_checkpointer(backend_settings) as saver:
            sent = greet(build_chat_graph(saver), offline(backend_settings), "t", 3)
        assert count_checkpoints(backend_settings, "t") == 3
    with open_checkpointer(backend_settings) as saver:
        sent += greet(build_chat_graph(saver), offline(backend_settings), "t", 1)
    assert count_checkpoints(backend_settings, "t") == 1
    assert [t["content"] for t in stored_history(backend_settings, "t")[::2]] == sent
    if backend_settings.checkpoint_url:
        with psycopg.connect(backend_settings.checkpoint_url) as conn:
            unused = conn.execute("SELECT count(*) FROM checkpoint_blobs b WHERE NOT EXISTS (SELECT 1 FROM "
                                  "checkpoints c WHERE c.checkpoint -> 'channel_versions' ->> b.channel = b.version)"
                                  ).fetchone()[0]
            blobs = conn.execute("SELECT count(*) FROM checkpoint_blobs").fetchone()[0]
        assert unused == 0 and blobs > 0


def test_other_threads_are_not_pruned(backend_settings) -> None:
    with open_checkpointer(backend_settings) as saver:
        graph = build_chat_graph(saver)
        mine = greet(graph, offline(backend_settings), "mine", 2)
        theirs = greet(graph, offline(backend_settings), "theirs", 3)
        mine += greet(graph, offline(backend_settings), "mine", 1)
    assert [t["content"] for t in stored_history(backend_settings, "mine")[::2]] == mine
    assert [t["content"] for t in stored_history(backend_settings, "theirs")[::2]] == theirs


def test_a_database_from_before_pruning_is_compacted_once(settings, monkeypatch) -> None:
    """A state.sqlite written before pruning (every checkpoint kept, no auto-vacuum) is pruned to each thread's
    latest checkpoint and rewritten on first open, with every message kept; later opens leave it be."""
    with monkeypatch.context() as before:
        before.setattr(KeepLatestSqliteSaver, "put", SqliteSaver.put)
        before.setattr(checkpoints, "_reclaim_freed_pages", lambda saver: None)
        with open_checkpointer(settings) as saver:
            graph = build_chat_graph(saver)
            long = greet(graph, offline(settings), "long", 150)
            short = greet(graph, offline(settings), "short", 10)
    old_size = settings.state_db.stat().st_size
    assert auto_vacuum(settings) == 0 and stored_rows(settings) == 160
    assert count_checkpoints(settings, "long") == 1  # this first open compacted the file
    assert stored_rows(settings) == 2 and settings.state_db.stat().st_size < old_size / 10
    assert [t["content"] for t in stored_history(settings, "long")[::2]] == long
    assert [t["content"] for t in stored_history(settings, "short")[::2]] == short
    assert auto_vacuum(settings) == INCREMENTAL


def auto_vacuum(settings: Settings) -> int:
    with closing(sqlite3.connect(settings.state_db)) as conn:
        return conn.execute("PRAGMA auto_vacuum").fetchone()[0]


def stored_rows(settings: Settings) -> int:
    with closing(sqlite3.connect(settings.state_db)) as conn:
        return conn.execute("SELECT count(*) FROM checkpoints").fetchone()[0]


def test_a_new_database_gives_freed_pages_back(settings) -> None:
    with open_checkpointer(settings) as saver:
        greet(build_chat_graph(saver), offline(settings), "t", 20)
        free = saver.conn.execute("PRAGMA freelist_count").fetchone()[0]
    assert auto_vacuum(settings) == INCREMENTAL and free == 0


STORED_BEFORE_DOMAIN_PACKAGE = Path(__file__).parent / "fixtures" / "threads_before_domain_package.sqlite"


def test_threads_stored_when_domain_was_one_module_load_and_go_on(settings) -> None:
    """Threads written while the models lived in one ``mikey/domain.py`` (objects tagged ``mikey.domain``; see
    fixtures/README.md) read back as typed models, take a new turn, and the new checkpoint tags them the same way,
    so older code reads it too."""
    settings.home.mkdir(parents=True)
    shutil.copyfile(STORED_BEFORE_DOMAIN_PACKAGE, settings.state_db)
    with open_checkpointer(settings) as saver:
        graph = build_chat_graph(saver)
        analysis = graph.get_state({"configurable": {"thread_id": "analysis"}}).values
        trade = graph.get_state({"configurable": {"thread_id": "trade"}}).values
        assert isinstance(analysis["intent"], Intent) and analysis["intent"].kind == "compare"
        assert isinstance(analysis["answer"], Answer) and isinstance(analysis["grounding"], GroundingReport)
        facts = analysis["answer"].facts
        assert isinstance(facts, Facts) and [other.symbol for other in facts.compared] == ["ETH"]
        assert facts.signal is not None and facts.sentiment is not None and facts.patterns
        assert facts.news and facts.memories and facts.numbers()[0].display == "21.780764"
        assert isinstance(trade["proposal"], TradeProposal) and isinstance(trade["proposal"].risk, RiskAssessment)
        assert trade["answer"].proposal == trade["proposal"]
        assert run_turn(graph, offline(settings), "hi there", "trade").group == "rules"
        assert [t["role"] for t in thread_history(graph, "trade")] == ["user", "assistant"] * 2
        assert isinstance(graph.get_state({"configurable": {"thread_id": "trade"}}).values["answer"], Answer)
    with closing(sqlite3.connect(settings.state_db)) as conn:
        (stored,) = conn.execute("SELECT checkpoint FROM checkpoints WHERE thread_id = 'trade'").fetchone()
    assert b"mikey.domain" in stored and b"mikey.domain." not in stored


def test_every_model_a_thread_may_hold_is_named_by_its_public_path() -> None:
    """The checkpoint allow-list names ``mikey.domain`` models, and each says it lives there, whichever module of
    the package defines it: that is the tag stored threads carry."""
    import mikey.domain

    assert {module for module, _ in _STATE_TYPES} == {"mikey.domain"}
    for name in mikey.domain.__all__:
        public = getattr(mikey.domain, name)
        if isinstance(public, type):
            assert public.__module__ == "mikey.domain", name
