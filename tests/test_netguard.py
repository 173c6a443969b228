"""The network guard itself: if it let traffic through, the offline claims of the other tests would mean nothing."""

from __future__ import annotations

import socket
import sys

import pytest

from tests.conftest import netguard, run_mikey


def test_non_loopback_connect_is_blocked() -> None:
    with socket.socket() as sock, pytest.raises(netguard.BlockedNetwork, match="connect to"):
        sock.connect(("1.1.1.1", 443))


def test_dns_lookup_is_blocked() -> None:
    with pytest.raises(netguard.BlockedNetwork, match="DNS"):
        socket.getaddrinfo("api.openai.com", 443)


def test_loopback_is_allowed() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    try:
        socket.create_connection(server.getsockname(), timeout=1).close()
    finally:
        server.close()


def test_guard_is_loaded_in_cli_subprocesses() -> None:
    import subprocess

    from tests.conftest import NETGUARD_DIR

    code = "import socket; socket.create_connection(('1.1.1.1', 443), timeout=1)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={"PYTHONPATH": str(NETGUARD_DIR)}, timeout=60)
    assert done.returncode != 0
    assert "network access blocked" in done.stderr
    assert run_mikey("--help").returncode == 0
