"""A throwaway PostgreSQL cluster for the test session (``postgres_server``) and a fresh database per test
(``postgres_url``): the market store and the chat checkpointer are proven on a real server, started from Debian's
packages (``make system-deps``)."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.fakes.loopback import free_port

PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"
INSTALL_HINT = "install the PostgreSQL server: `apt-get update && apt-get install -y postgresql` (Debian/Ubuntu)"


def postgres_bin() -> Path:
    """The newest Debian PostgreSQL bin folder, else one on PATH; fails the test with the install command."""
    found = [Path(p) for p in glob.glob(PG_BIN_GLOB) if (Path(p) / "initdb").exists()]
    if found:
        return max(found, key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(on_path).parent
    pytest.fail(f"PostgreSQL binaries (initdb, pg_ctl) not found under {PG_BIN_GLOB} or on PATH; {INSTALL_HINT}")


class PostgresCluster:
    """initdb + pg_ctl in a private folder, listening on 127.0.0.1 only with trust auth.

    PostgreSQL refuses to run as root, so as root the cluster belongs to the ``postgres`` user (created by the Debian
    package) and every command runs through ``runuser``; its folder lives outside pytest's 0700 tmp tree.
    """

    def __init__(self) -> None:
        self.bin = postgres_bin()
        self.prefix: list[str] = []
        self.root = Path(tempfile.mkdtemp(prefix="mikey-pg-"))
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                shutil.rmtree(self.root)
                pytest.fail(f"running as root and there is no 'postgres' user to run the server as; {INSTALL_HINT}")
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
            self.prefix = ["runuser", "-u", "postgres", "--"]
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        done = subprocess.run([*self.prefix, *args], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}\n{log}")

    def start(self) -> None:
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                  "--locale=C", "--no-sync")
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''"
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t",
                  "60", "start")

    def stop(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """URL of the ``postgres`` database of a cluster started for this test session and removed after it."""
    cluster = PostgresCluster()
    try:
        cluster.start()
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        cluster.stop()
        pytest.fail(f"could not start a throwaway PostgreSQL cluster: {exc}")
    yield cluster.url
    cluster.stop()


@contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    """URL of a new, empty database on the cluster at ``server_url``, dropped afterwards."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield server_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A fresh, empty database for one test, dropped afterwards."""
    with fresh_database(postgres_server) as url:
        yield url
