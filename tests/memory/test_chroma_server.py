"""The scale-out path of the memory: a real Chroma server (the ``chroma run`` binary of the chromadb package) on
127.0.0.1, reached through ``MIKEY_CHROMA_URL`` and HttpClient, with the same behaviour as the embedded store and data
that survives a server restart."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mikey.memory.store import INSIGHTS, open_memory
from tests.fakes.loopback import free_port
from tests.fakes.memories import SOL_MACD, answer_for, insight_for

CHROMA = Path(shutil.which("chroma") or Path(__file__).resolve().parents[2] / ".venv" / "bin" / "chroma")


class ChromaServer:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if not CHROMA.exists():
            pytest.fail(f"the chroma server binary is missing at {CHROMA}; it comes with the chromadb package")
        self.process = subprocess.Popen([str(CHROMA), "run", "--path", str(self.path), "--host", "127.0.0.1",
                                         "--port", str(self.port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/api/v2/heartbeat", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        self.stop()
        pytest.fail("the chroma server did not answer its heartbeat within 30 s")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            if self.process.stderr is not None:
                self.process.stderr.close()
            self.process = None


@pytest.fixture
def server(tmp_path) -> Iterator[ChromaServer]:
    chroma = ChromaServer(tmp_path / "chroma-server")
    chroma.start()
    yield chroma
    chroma.stop()


@pytest.fixture(scope="module")
def embedding():
    from mikey.memory.embeddings import MiniLMEmbedding

    return MiniLMEmbedding()


def test_memory_through_a_chroma_server_survives_its_restart(settings, server, embedding) -> None:
    settings = settings.model_copy(update={"chroma_url": server.url})
    memory = open_memory(settings, embedding)
    assert type(memory.client).__name__ != "PersistentClient" and not settings.chroma_dir.exists()
    memory.remember_insight(insight_for("SOL", SOL_MACD))
    memory.remember_turn(thread_id="t", user_id="alice", question="How is ETH doing?",
                         answer=answer_for("ETH", "Ether is flat."))
    memory.set_preference("alice", "risk_tolerance", "low")

    memory.close()
    server.stop()
    server.start()  # same folder, new process (and a new port is not needed: the URL is unchanged)

    again = open_memory(settings, embedding)
    hits = again.recall("what did you say about solana momentum", user_id="alice")
    assert (hits[0].collection, hits[0].symbol) == (INSIGHTS, "SOL")
    assert again.recall("ether", user_id="alice", symbol="ETH")[0].text == "Q: How is ETH doing?\nA: Ether is flat."
    assert again.preferences("alice") == {"risk_tolerance": "low"}
    again.close()
    again.close()  # idempotent
