"""Shared fixtures. Networking is blocked (loopback only) for the whole session and for every CLI subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

NETGUARD_DIR = Path(__file__).parent / "netguard"
sys.path.insert(0, str(NETGUARD_DIR))
import sitecustomize as netguard  # noqa: E402  (the guard module; installs itself on import)

netguard.install()

from tests.postgres import postgres_server, postgres_url  # noqa: E402,F401  (session-wide PostgreSQL fixtures)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
PROVIDER_KEYS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY")


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No provider keys, no MIKEY_* settings from the developer's shell; a fresh MIKEY_HOME per test."""
    for name in list(os.environ):
        if name.startswith("MIKEY_") or name in PROVIDER_KEYS:
            monkeypatch.delenv(name)
    home = tmp_path / "mikey-home"
    monkeypatch.setenv("MIKEY_HOME", str(home))
    monkeypatch.setenv("COLUMNS", "200")  # rich must not wrap numbers in the facts card
    from mikey.settings import get_settings

    get_settings.cache_clear()
    return home


@pytest.fixture
def settings(isolated_env: Path):
    """Settings for the embedded defaults in a temporary home; memory and the response cache off unless a test
    turns them on (LiteLLM's cache is process-wide, so one test's replies would answer another's)."""
    from mikey.settings import Settings

    return Settings(home=isolated_env, memory_enabled=False, cache_enabled=False)


@pytest.fixture
def ledger(settings):
    """The model-call ledger at ``settings.ledger_db`` (in the test's home, where the product keeps it), closed after
    the test."""
    from mikey.router.ledger import Ledger

    book = Ledger(settings.ledger_db)
    yield book
    book.close()


def mikey_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a ``mikey`` subprocess: no provider keys or MIKEY_* settings but ``env``'s, the network
    guard loaded, wide columns."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("MIKEY_") and k not in PROVIDER_KEYS}
    full_env.update({"PYTHONPATH": str(NETGUARD_DIR), "COLUMNS": "200"})
    full_env.update(env or {})
    return full_env


def run_mikey(*args: str, env: dict[str, str] | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    """Run the ``mikey`` CLI in a fresh interpreter with the network guard loaded."""
    return subprocess.run([sys.executable, "-m", "mikey", *args], capture_output=True, text=True, env=mikey_env(env),
                          timeout=timeout, cwd=REPO)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server on a free loopback port for this test session (installed by `make system-deps`)."""
    import shutil
    import socket
    import time

    from tests.fakes.loopback import free_port

    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed; run `make system-deps` (Debian package redis-server)")
    port = free_port()
    folder = tmp_path_factory.mktemp("redis")
    server = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                               "--dir", str(folder)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as conn:
                conn.sendall(b"PING\r\n")
                if conn.recv(16).startswith(b"+PONG"):
                    break
        except OSError:
            if time.monotonic() > deadline:
                server.kill()
                pytest.fail("redis-server did not start")
            time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}/0"
    server.terminate()
    server.wait(timeout=10)


def close_litellm_clients(litellm: object) -> None:
    """Close and forget the sync HTTP clients LiteLLM cached during a test.

    LiteLLM keeps one client per provider and api_base for the life of the process. Left open, their sockets to a
    stopped fake server are collected during some later test and surface as ResourceWarnings.
    """
    import inspect

    cache = litellm.in_memory_llm_clients_cache  # type: ignore[attr-defined]
    for client in list(cache.cache_dict.values()):
        close = getattr(client, "close", None)
        if callable(close) and not inspect.iscoroutinefunction(close):
            close()
    cache.flush_cache()


@pytest.fixture(autouse=True)
def litellm_clients_closed() -> Iterator[None]:
    """After every test that used LiteLLM, close the HTTP clients it cached."""
    yield
    if "litellm" in sys.modules:
        close_litellm_clients(sys.modules["litellm"])
