"""``SolanaBroker`` on the program's real binary in the sandbox: a short opens and its liquidation price is read back,
a long is refused with the program's panic and leaves no account, retries never execute twice (a lost answer, a send
that never arrived, an expired blockhash, a resubmission), closes realise the program's PnL, sign-only hands out a
transaction without sending it, and everything survives into the next command."""

from __future__ import annotations

import base64
import struct
from pathlib import Path

import pytest
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.transaction import VersionedTransaction

from mikey.errors import BrokerUnavailable, ConfigError, NotFound, OrderRejected
from mikey.execution.broker import Broker, open_broker
from mikey.execution.solana.broker import SignOnly, SolanaBroker
from mikey.execution.solana.idl import Idl
from mikey.execution.solana.journal import OrderJournal, derive_position_index
from mikey.execution.solana.sandbox import LiteSVMTransport
from mikey.execution.solana.wallet import save_keypair
from mikey.settings import Settings
from tests.execution.solana.conftest import PROGRAM_ID, order

PID = Pubkey.from_string(PROGRAM_ID)
FEE = 5_000


def position_accounts(sandbox: LiteSVMTransport, idl: Idl) -> list[Pubkey]:
    """Every Position account the program owns."""
    disc = idl.account_discriminator("Position")
    return [key for key, account in sandbox.svm.get_program_accounts(PID) if bytes(account.data[:8]) == disc]


def expected_position(wallet: Pubkey, client_id: str) -> Pubkey:
    user_account = Pubkey.find_program_address([b"user_account", bytes(wallet), b"\x00\x00"], PID)[0]
    index = derive_position_index(client_id)
    return Pubkey.find_program_address([b"position", bytes(user_account), struct.pack("<H", index)], PID)[0]


class LosesAnswers:
    """The sandbox behind a connection that fails once: ``after`` the node executed the send, or ``before`` it."""

    def __init__(self, inner: LiteSVMTransport, when: str) -> None:
        self.inner = inner
        self.when: str | None = when
        self.sends = 0

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    def send(self, tx: VersionedTransaction):
        self.sends += 1
        when, self.when = self.when, None
        if when == "after":
            self.inner.send(tx)
        if when is not None:
            raise BrokerUnavailable("Solana RPC did not answer sendTransaction within 10s")
        return self.inner.send(tx)


def make_broker(transport, keypair: Keypair, idl: Idl, tmp_path: Path, **options) -> SolanaBroker:
    return SolanaBroker(transport, keypair, PROGRAM_ID, idl, journal=OrderJournal(tmp_path / "orders.sqlite"),
                        name="sandbox", poll_interval=0.01, confirm_timeout=1.0, **options)


def test_it_is_a_broker(broker: SolanaBroker) -> None:
    assert isinstance(broker, Broker)


def test_a_short_opens_and_its_liquidation_price_is_read_back(broker: SolanaBroker, sandbox: LiteSVMTransport,
                                                               keypair: Keypair, idl: Idl) -> None:
    fill = broker.submit(order("short-1", size=0.5, leverage=10), oracle_price=60_000.0)

    assert (fill.kind, fill.side, fill.size, fill.price, fill.fee) == ("open", "short", 0.5, 60_000.0, 0.0)
    assert fill.position_id == str(expected_position(keypair.pubkey(), "short-1"))
    assert sandbox.signature_status(Signature.from_string(fill.broker_ref)) is not None
    position = broker.position(fill.position_id)
    assert (position.status, position.size, position.entry_price, position.leverage) == ("open", 0.5, 60_000.0, 10)
    assert position.collateral == 3_000.0  # the margin the program reserved: 0.5 * 60,000 / 10
    assert position.user_id == "local" and position.proposal_id == "short-1" and position.market == "BTC"
    # The program's own figure, decoded from 6-decimal fixed point: entry * (1 + 500 / leverage). Our own estimate
    # for a 10x short is about entry * (1 + 1/10 - maintenance): the program's is wrong, and reported as it is.
    assert position.liquidation_price == 60_000.0 * (1 + 500 / 10)
    ours = 60_000.0 * (1 + 1 / 10 - 0.005)
    assert position.liquidation_price / ours > 40
    account = idl.decode_account("Position", sandbox.get_account(Pubkey.from_string(fill.position_id)).data)
    assert account["liquidation_price"] == 3_060_000_000_000
    assert position_accounts(sandbox, idl) == [Pubkey.from_string(fill.position_id)]


def test_a_long_is_refused_with_the_programs_panic(broker: SolanaBroker, sandbox: LiteSVMTransport,
                                                   keypair: Keypair, idl: Idl) -> None:
    before = sandbox.balance(keypair.pubkey())
    with pytest.raises(OrderRejected, match="attempt to subtract with overflow"):
        broker.submit(order("long-1", side="long"), oracle_price=60_000.0)
    assert sandbox.get_account(expected_position(keypair.pubkey(), "long-1")) is None
    assert position_accounts(sandbox, idl) == []
    assert sandbox.balance(keypair.pubkey()) == before  # simulated only: nothing was sent, no fee
    assert broker.lookup("long-1") is None


def test_leverage_must_be_whole(broker: SolanaBroker) -> None:
    with pytest.raises(OrderRejected, match="not a whole number.*u16"):
        broker.submit(order("lev", leverage=2.5), oracle_price=60_000.0)
    assert broker.journal.get("lev") is None


def test_leverage_above_the_accounts_limit_is_the_programs_error(broker: SolanaBroker) -> None:
    # The sandbox's user account allows 100x; the program checks it (OrderRequest itself stops at 100).
    request = order("lev-high", size=0.01).model_copy(update={"leverage": 101.0})
    with pytest.raises(OrderRejected, match="InvalidLeverage: Invalid leverage amount"):
        broker.submit(request, oracle_price=60_000.0)


def test_the_price_bound_is_enforced(broker: SolanaBroker) -> None:
    with pytest.raises(OrderRejected, match="worse than the approved bound"):
        broker.submit(order("bound", price_bound=61_000.0), oracle_price=60_000.0)


def test_a_resubmission_returns_the_first_fill(broker: SolanaBroker, sandbox: LiteSVMTransport, keypair: Keypair,
                                               idl: Idl) -> None:
    first = broker.submit(order("again"), oracle_price=60_000.0)
    balance = sandbox.balance(keypair.pubkey())
    assert broker.submit(order("again"), oracle_price=60_500.0) == first
    assert sandbox.balance(keypair.pubkey()) == balance
    assert len(position_accounts(sandbox, idl)) == 1
    with pytest.raises(OrderRejected, match="other terms"):
        broker.submit(order("again", size=1.0), oracle_price=60_000.0)


def test_a_lost_answer_is_resolved_by_the_same_signature(sandbox: LiteSVMTransport, keypair: Keypair, idl: Idl,
                                                         tmp_path: Path) -> None:
    flaky = LosesAnswers(sandbox, "after")
    broker = make_broker(flaky, keypair, idl, tmp_path)
    before = sandbox.balance(keypair.pubkey())
    with pytest.raises(BrokerUnavailable):
        broker.submit(order("lost"), oracle_price=60_000.0)
    signed = broker.journal.get("lost").signature

    fill = broker.submit(order("lost"), oracle_price=60_000.0)
    assert fill.broker_ref == signed
    assert flaky.sends == 1  # the retry found the signature landed and sent nothing
    rent = sandbox.get_account(Pubkey.from_string(fill.position_id)).lamports
    assert sandbox.balance(keypair.pubkey()) == before - FEE - rent
    assert len(position_accounts(sandbox, idl)) == 1


def test_a_send_that_never_arrived_is_re_sent_as_the_same_bytes(sandbox: LiteSVMTransport, keypair: Keypair,
                                                                idl: Idl, tmp_path: Path) -> None:
    flaky = LosesAnswers(sandbox, "before")
    broker = make_broker(flaky, keypair, idl, tmp_path)
    with pytest.raises(BrokerUnavailable):
        broker.submit(order("never"), oracle_price=60_000.0)
    record = broker.journal.get("never")
    with pytest.raises(BrokerUnavailable, match="may yet execute"):
        broker.lookup("never")

    fill = broker.submit(order("never"), oracle_price=60_000.0)
    assert fill.broker_ref == record.signature
    assert broker.journal.get("never").tx == record.tx
    assert len(position_accounts(sandbox, idl)) == 1


def test_after_the_blockhash_expires_a_new_transaction_is_signed(sandbox: LiteSVMTransport, keypair: Keypair,
                                                                 idl: Idl, tmp_path: Path) -> None:
    flaky = LosesAnswers(sandbox, "before")
    broker = make_broker(flaky, keypair, idl, tmp_path)
    with pytest.raises(BrokerUnavailable):
        broker.submit(order("expired"), oracle_price=60_000.0)
    old = broker.journal.get("expired").signature
    sandbox.svm.expire_blockhash()
    assert broker.lookup("expired") is None  # it can never land now

    fill = broker.submit(order("expired"), oracle_price=60_000.0)
    assert fill.broker_ref != old
    assert fill.position_id == str(expected_position(keypair.pubkey(), "expired"))
    assert len(position_accounts(sandbox, idl)) == 1


def test_close_realises_the_programs_pnl(broker: SolanaBroker, sandbox: LiteSVMTransport, idl: Idl) -> None:
    opened = broker.submit(order("o-1", size=0.5), oracle_price=60_000.0)
    closing = order("c-1", kind="close", size=0.5, position_id=opened.position_id)
    closed = broker.submit(closing, oracle_price=59_000.0)

    assert (closed.kind, closed.size, closed.price, closed.realised_pnl) == ("close", 0.5, 59_000.0, 500.0)
    assert broker.positions("local") == []
    (held,) = broker.positions("local", include_closed=True)
    assert (held.status, held.size, held.exit_price, held.realised_pnl, held.collateral) == (
        "closed", 0.0, 59_000.0, 500.0, 0.0)
    assert held.closed_at is not None
    assert broker.lookup("o-1") == opened and broker.lookup("c-1") == closed
    assert broker.submit(closing, oracle_price=58_000.0) == closed

    with pytest.raises(OrderRejected, match="already closed"):
        broker.submit(order("c-2", kind="close", size=0.5, position_id=opened.position_id), oracle_price=59_000.0)


def test_what_the_program_cannot_do_is_refused(broker: SolanaBroker) -> None:
    opened = broker.submit(order("o-2"), oracle_price=60_000.0)
    with pytest.raises(OrderRejected, match="cannot reduce"):
        broker.submit(order("r-1", kind="reduce", size=0.1, position_id=opened.position_id), oracle_price=60_000.0)
    with pytest.raises(OrderRejected, match="is a short, not a long"):
        broker.submit(order("c-3", kind="close", side="long", position_id=opened.position_id), oracle_price=60_000.0)
    with pytest.raises(OrderRejected, match="no QuantDesk position"):
        broker.submit(order("c-4", kind="close", position_id=str(Keypair().pubkey())), oracle_price=60_000.0)
    with pytest.raises(OrderRejected, match="trades BTC, ETH, SOL"):
        broker.submit(order("x-1", market="DOGE"), oracle_price=0.1)


def test_positions_and_lookups(broker: SolanaBroker, sandbox: LiteSVMTransport) -> None:
    first = broker.submit(order("p-a", size=0.1), oracle_price=60_000.0)
    second = broker.submit(order("p-b", size=2, market="SOL"), oracle_price=150.0)
    ids = [p.id for p in broker.positions("local")]
    assert set(ids) == {first.position_id, second.position_id}
    assert broker.positions("someone-else") == []
    assert broker.lookup("never-seen") is None
    with pytest.raises(NotFound):
        broker.position(str(Keypair().pubkey()))
    with pytest.raises(NotFound):
        broker.position("not-an-address")
    market = Pubkey.find_program_address([b"market", b"SOL", b"USDT"], PID)[0]
    with pytest.raises(NotFound):
        broker.position(str(market))  # a program account, but not a Position
    assert broker.position(second.position_id).market == "SOL"


def test_no_sol_is_a_rejection(program_path: Path, idl: Idl, tmp_path: Path) -> None:
    broke = Keypair()
    sandbox = LiteSVMTransport(program_path, idl, tmp_path / "broke", wallet=broke.pubkey(), airdrop_sol=0)
    broker = make_broker(sandbox, broke, idl, tmp_path)
    with pytest.raises(OrderRejected, match="has no SOL"):
        broker.submit(order("broke"), oracle_price=60_000.0)


def test_sign_only_hands_out_the_transaction_and_reconciles_once_broadcast(sandbox: LiteSVMTransport,
                                                                           keypair: Keypair, idl: Idl,
                                                                           tmp_path: Path) -> None:
    broker = make_broker(sandbox, keypair, idl, tmp_path, sign_only=True)
    balance = sandbox.balance(keypair.pubkey())
    with pytest.raises(SignOnly) as signed:
        broker.submit(order("so-1"), oracle_price=60_000.0)
    assert isinstance(signed.value, BrokerUnavailable)
    tx = VersionedTransaction.from_bytes(base64.b64decode(signed.value.transaction))
    assert str(tx.signatures[0]) == signed.value.signature
    assert all(tx.verify_with_results()) and tx.message.account_keys[0] == keypair.pubkey()
    assert sandbox.balance(keypair.pubkey()) == balance and position_accounts(sandbox, idl) == []

    with pytest.raises(SignOnly) as again:  # a retry hands out the same transaction; still nothing sent
        broker.submit(order("so-1"), oracle_price=60_000.0)
    assert again.value.transaction == signed.value.transaction
    with pytest.raises(BrokerUnavailable, match="may yet execute"):
        broker.lookup("so-1")

    sandbox.send(tx)  # the user broadcasts it with their own wallet
    fill = broker.lookup("so-1")
    assert fill is not None and fill.broker_ref == signed.value.signature and fill.price == 60_000.0


def test_a_sign_only_transaction_left_unsent_expires_to_nothing(sandbox: LiteSVMTransport, keypair: Keypair,
                                                                idl: Idl, tmp_path: Path) -> None:
    broker = make_broker(sandbox, keypair, idl, tmp_path, sign_only=True)
    with pytest.raises(SignOnly):
        broker.submit(order("so-2"), oracle_price=60_000.0)
    sandbox.svm.expire_blockhash()
    assert broker.lookup("so-2") is None


def test_the_next_command_sees_the_same_state(broker: SolanaBroker, program_path: Path, keypair: Keypair,
                                              idl: Idl, tmp_path: Path) -> None:
    fill = broker.submit(order("persist"), oracle_price=60_000.0)
    broker.close()

    later = LiteSVMTransport(program_path, idl, tmp_path / "sandbox", wallet=keypair.pubkey())
    again = make_broker(later, keypair, idl, tmp_path)
    assert [p.id for p in again.positions("local")] == [fill.position_id]
    assert again.submit(order("persist"), oracle_price=60_000.0) == fill
    assert again.lookup("persist") == fill
    again.close()


# Composition --------------------------------------------------------------------------------------------------------

def test_the_sandbox_needs_the_program_binary(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, broker="sandbox")
    with pytest.raises(ConfigError, match="MIKEY_QUANTDESK_PROGRAM"):
        SolanaBroker.from_settings(settings, passphrase="x")


def test_from_settings_builds_the_sandbox_broker(program_path: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(home=tmp_path / "home", broker="sandbox", quantdesk_program=program_path)
    keypair = Keypair()
    save_keypair(keypair, settings.wallet_path, "pass phrase")
    monkeypatch.setenv("MIKEY_WALLET_PASSPHRASE", "pass phrase")

    broker = open_broker(settings)
    assert isinstance(broker, SolanaBroker) and broker.name == "sandbox" and broker.wallet == keypair.pubkey()
    fill = broker.submit(order("settings-1"), oracle_price=60_000.0)
    broker.close()
    assert (settings.sandbox_dir / "accounts.json").is_file() and (settings.sandbox_dir / "orders.sqlite").is_file()

    reopened = open_broker(settings)
    assert reopened.lookup("settings-1") == fill
    reopened.close()


def test_from_settings_builds_the_rpc_broker(tmp_path: Path) -> None:
    from mikey.execution.solana.rpc import RpcTransport

    settings = Settings(home=tmp_path, broker="solana", solana_rpc_url="http://127.0.0.1:1",
                        solana_commitment="finalized", solana_sign_only=True)
    save_keypair(Keypair(), settings.wallet_path, "pw")
    broker = SolanaBroker.from_settings(settings, passphrase="pw")
    assert isinstance(broker.transport, RpcTransport) and broker.transport.url == "http://127.0.0.1:1"
    assert broker.sign_only and broker.commitment == "finalized" and broker.name == "solana"
    broker.close()
