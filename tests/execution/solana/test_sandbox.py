"""The sandbox cluster on the program's real binary: the accounts it creates (at addresses derived here), the
transaction lifecycle (signatures, blockhashes, simulation, confirmation, fees, a re-sent transaction executing once)
and the state it keeps on disk between commands."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from solders.errors import SignerError
from solders.keypair import Keypair
from solders.message import MessageV0
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.transaction import VersionedTransaction

from mikey.errors import ConfigError
from mikey.execution.solana.idl import Idl
from mikey.execution.solana.rpc import BlockhashExpired, TransactionRefused, Transport
from mikey.execution.solana.sandbox import LiteSVMTransport
from tests.execution.solana.conftest import PROGRAM_ID

PID = Pubkey.from_string(PROGRAM_ID)
FEE = 5_000
SOL = 1_000_000_000


def user_account_of(wallet: Pubkey) -> Pubkey:
    return Pubkey.find_program_address([b"user_account", bytes(wallet), struct.pack("<H", 0)], PID)[0]


def market_of(symbol: str) -> Pubkey:
    return Pubkey.find_program_address([b"market", symbol.encode(), b"USDT"], PID)[0]


def open_tx(sandbox: LiteSVMTransport, idl: Idl, signer: Keypair, *, index: int = 1, side: str = "Short",
            wallet: Pubkey | None = None) -> VersionedTransaction:
    wallet = wallet or signer.pubkey()
    ix = idl.build_instruction("open_position", {"position_index": index, "side": side, "size": 500_000,
                                                 "leverage": 10, "entry_price": 60_000_000_000},
                               {"user_account": user_account_of(wallet), "market": market_of("BTC"), "user": wallet})
    return VersionedTransaction(MessageV0.try_compile(wallet, [ix], [], sandbox.latest_blockhash()), [signer])


def position_of(wallet: Pubkey, index: int) -> Pubkey:
    return Pubkey.find_program_address([b"position", bytes(user_account_of(wallet)), struct.pack("<H", index)],
                                       PID)[0]


def test_the_sandbox_is_a_transport(sandbox: LiteSVMTransport) -> None:
    assert isinstance(sandbox, Transport)


def test_bootstrap_creates_markets_user_account_and_sol(sandbox: LiteSVMTransport, idl: Idl,
                                                        keypair: Keypair) -> None:
    for symbol in ("BTC", "ETH", "SOL"):
        account = sandbox.get_account(market_of(symbol))
        assert account is not None and account.owner == PID
        market = idl.decode_account("Market", account.data)
        assert (market["base_asset"], market["quote_asset"], market["is_active"]) == (symbol, "USDT", True)
        assert market["max_leverage"] == 100
    account = sandbox.get_account(user_account_of(keypair.pubkey()))
    assert account is not None and account.owner == PID
    user = idl.decode_account("UserAccount", account.data)
    assert user["authority"] == keypair.pubkey()
    assert user["total_collateral"] == user["available_margin"] == 1_000_000 * 1_000_000
    assert user["max_leverage"] == 100 and user["is_active"]
    assert sandbox.balance(keypair.pubkey()) == 100 * SOL


def test_a_missing_binary_names_the_setting(idl: Idl, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="MIKEY_QUANTDESK_PROGRAM"):
        LiteSVMTransport(tmp_path / "absent.so", idl, None, wallet=Keypair().pubkey())


def test_a_confirmed_short_pays_one_fee_and_its_rent(sandbox: LiteSVMTransport, idl: Idl, keypair: Keypair) -> None:
    before = sandbox.balance(keypair.pubkey())
    tx = open_tx(sandbox, idl, keypair)
    assert sandbox.simulate(tx).ok
    assert sandbox.send(tx) == tx.signatures[0]

    status = sandbox.signature_status(tx.signatures[0])
    assert status is not None and status.err is None and status.reached("finalized")
    assert any("Position opened: Short 500000 at 60000000000" in line for line in status.logs)
    position = sandbox.get_account(position_of(keypair.pubkey(), 1))
    assert position is not None
    rent = position.lamports
    assert sandbox.balance(keypair.pubkey()) == before - FEE - rent


def test_a_re_sent_transaction_executes_once(sandbox: LiteSVMTransport, idl: Idl, keypair: Keypair,
                                             program_path: Path, tmp_path: Path) -> None:
    tx = open_tx(sandbox, idl, keypair)
    sandbox.send(tx)
    after_first = sandbox.balance(keypair.pubkey())
    assert sandbox.send(tx) == tx.signatures[0]
    assert sandbox.balance(keypair.pubkey()) == after_first

    later = LiteSVMTransport(program_path, idl, tmp_path / "sandbox", wallet=keypair.pubkey())  # next command
    assert later.send(tx) == tx.signatures[0]
    assert later.balance(keypair.pubkey()) == after_first
    assert later.signature_status(tx.signatures[0]) is not None


def test_an_expired_blockhash_is_refused(sandbox: LiteSVMTransport, idl: Idl, keypair: Keypair) -> None:
    tx = open_tx(sandbox, idl, keypair)
    sandbox.svm.expire_blockhash()
    with pytest.raises(BlockhashExpired):
        sandbox.simulate(tx)
    with pytest.raises(BlockhashExpired):
        sandbox.send(tx)
    assert sandbox.signature_status(tx.signatures[0]) is None
    assert sandbox.get_account(position_of(keypair.pubkey(), 1)) is None


def test_a_transaction_signed_in_an_earlier_command_cannot_land(sandbox: LiteSVMTransport, idl: Idl,
                                                                keypair: Keypair, program_path: Path,
                                                                tmp_path: Path) -> None:
    tx = open_tx(sandbox, idl, keypair)
    later = LiteSVMTransport(program_path, idl, tmp_path / "sandbox", wallet=keypair.pubkey())
    assert later.latest_blockhash() != tx.message.recent_blockhash
    with pytest.raises(BlockhashExpired):
        later.send(tx)


def test_a_bad_signature_is_refused(sandbox: LiteSVMTransport, idl: Idl, keypair: Keypair) -> None:
    tx = open_tx(sandbox, idl, keypair)
    forged = VersionedTransaction.populate(tx.message, [Signature.default()])
    with pytest.raises(TransactionRefused, match="signature"):
        sandbox.send(forged)
    impostor = Keypair()
    with pytest.raises(SignerError, match="mismatch"):  # solders will not sign for a key it does not hold
        open_tx(sandbox, idl, impostor, wallet=keypair.pubkey())


def test_a_simulation_failure_changes_nothing(sandbox: LiteSVMTransport, idl: Idl, keypair: Keypair) -> None:
    before = sandbox.balance(keypair.pubkey())
    simulation = sandbox.simulate(open_tx(sandbox, idl, keypair, side="Long"))
    assert simulation.err == "instruction 0 failed: ProgramFailedToComplete"
    assert str(idl.failure_from_logs(list(simulation.logs))).startswith("attempt to subtract with overflow")
    assert sandbox.balance(keypair.pubkey()) == before
    assert sandbox.get_account(position_of(keypair.pubkey(), 1)) is None


def test_a_failed_transaction_lands_and_pays_its_fee(sandbox: LiteSVMTransport, idl: Idl, keypair: Keypair) -> None:
    before = sandbox.balance(keypair.pubkey())
    tx = open_tx(sandbox, idl, keypair, side="Long")
    sandbox.send(tx)
    status = sandbox.signature_status(tx.signatures[0])
    assert status is not None and status.err == "instruction 0 failed: ProgramFailedToComplete"
    assert sandbox.balance(keypair.pubkey()) == before - FEE
    assert sandbox.get_account(position_of(keypair.pubkey(), 1)) is None


def test_no_sol_no_transaction(program_path: Path, idl: Idl, tmp_path: Path) -> None:
    broke = Keypair()
    sandbox = LiteSVMTransport(program_path, idl, tmp_path / "broke", wallet=broke.pubkey(), airdrop_sol=0)
    tx = open_tx(sandbox, idl, broke)
    assert "has no SOL" in (sandbox.simulate(tx).err or "")
    with pytest.raises(TransactionRefused, match="has no SOL"):
        sandbox.send(tx)


def test_sol_for_the_fee_but_not_the_rent(program_path: Path, idl: Idl, tmp_path: Path) -> None:
    poor = Keypair()
    sandbox = LiteSVMTransport(program_path, idl, tmp_path / "poor", wallet=poor.pubkey(), airdrop_sol=0.002)
    simulation = sandbox.simulate(open_tx(sandbox, idl, poor))
    assert not simulation.ok
    assert "insufficient lamports" in str(idl.failure_from_logs(list(simulation.logs), simulation.err))


def test_state_is_kept_between_commands(sandbox: LiteSVMTransport, idl: Idl, keypair: Keypair,
                                        program_path: Path, tmp_path: Path) -> None:
    tx = open_tx(sandbox, idl, keypair)
    sandbox.send(tx)
    sandbox.publish_price("ETH", 3_210.5)
    state_file = tmp_path / "sandbox" / "accounts.json"
    state = json.loads(state_file.read_text())

    assert state["version"] == 1 and state["program_id"] == PROGRAM_ID and state["sessions"] == 1
    position = str(position_of(keypair.pubkey(), 1))
    assert {position, str(keypair.pubkey()), str(market_of("BTC")), str(user_account_of(keypair.pubkey()))} <= set(
        state["accounts"])
    assert state["accounts"][position]["owner"] == PROGRAM_ID
    assert state["signatures"][str(tx.signatures[0])]["err"] is None

    later = LiteSVMTransport(program_path, idl, tmp_path / "sandbox", wallet=keypair.pubkey())
    assert json.loads(state_file.read_text())["sessions"] == 2
    assert later.balance(keypair.pubkey()) == sandbox.balance(keypair.pubkey())
    for key in (position, str(user_account_of(keypair.pubkey()))):
        assert bytes(later.get_account(Pubkey.from_string(key)).data) == bytes(
            sandbox.get_account(Pubkey.from_string(key)).data)
    eth = idl.decode_account("Market", later.get_account(market_of("ETH")).data)
    assert eth["last_oracle_price"] == 3_210_500_000


def test_a_state_file_of_another_program_is_refused(sandbox: LiteSVMTransport, idl: Idl, keypair: Keypair,
                                                     program_path: Path, tmp_path: Path) -> None:
    state_file = tmp_path / "sandbox" / "accounts.json"
    state = json.loads(state_file.read_text())
    state["program_id"] = str(Keypair().pubkey())
    state_file.write_text(json.dumps(state))
    with pytest.raises(ConfigError, match="remove it to start over"):
        LiteSVMTransport(program_path, idl, tmp_path / "sandbox", wallet=keypair.pubkey())
