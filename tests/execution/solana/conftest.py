"""Fixtures of the Solana broker's tests: the program's IDL (shipped in the package), its real binary (from
``../shared/fixtures/quantdesk``; tests that need it skip when it is absent), a sandbox cluster and a broker on it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from solders.keypair import Keypair

from mikey.execution.broker import OrderRequest
from mikey.execution.solana.idl import Idl

PROGRAM_ID = "C2T3UnvGdHwEkspXJG7JyAhwo6VKQEKjN6eCq69guYSw"
QUANTDESK = Path(__file__).resolve().parents[4] / "shared" / "fixtures" / "quantdesk"
PROGRAM_SO = QUANTDESK / "quantdesk_perp_dex.so"
SHARED_IDL = QUANTDESK / "quantdesk_perp_dex.idl.json"


def order(client_id: str = "p-1", *, side: str = "short", size: float = 0.5, leverage: float = 10,
          price_bound: float | None = None, market: str = "BTC", kind: str = "open",
          position_id: str | None = None) -> OrderRequest:
    """An approved order; the default bound lets any fill at 60,000 through."""
    bound = price_bound if price_bound is not None else (1e9 if side == "long" else 1.0)
    if kind == "close":  # closing a long sells, closing a short buys
        bound = price_bound if price_bound is not None else (1.0 if side == "long" else 1e9)
    return OrderRequest(client_id=client_id, user_id="local", kind=kind, market=market, side=side, size=size,
                        leverage=leverage, collateral=size * 60_000 / leverage, price_bound=bound,
                        position_id=position_id)


@pytest.fixture
def idl() -> Idl:
    return Idl.load(PROGRAM_ID)


@pytest.fixture
def program_path() -> Path:
    if not PROGRAM_SO.is_file():
        pytest.skip(f"the QuantDesk program binary {PROGRAM_SO} is absent")
    return PROGRAM_SO


@pytest.fixture
def keypair() -> Keypair:
    return Keypair()


@pytest.fixture
def sandbox(program_path: Path, idl: Idl, keypair: Keypair, tmp_path: Path):
    from mikey.execution.solana.sandbox import LiteSVMTransport

    return LiteSVMTransport(program_path, idl, tmp_path / "sandbox", wallet=keypair.pubkey())


@pytest.fixture
def broker(sandbox, keypair: Keypair, idl: Idl, tmp_path: Path) -> Iterator:
    from mikey.execution.solana.broker import SolanaBroker
    from mikey.execution.solana.journal import OrderJournal

    broker = SolanaBroker(sandbox, keypair, PROGRAM_ID, idl, journal=OrderJournal(tmp_path / "orders.sqlite"),
                          name="sandbox", poll_interval=0.01, confirm_timeout=2.0)
    yield broker
    broker.close()
