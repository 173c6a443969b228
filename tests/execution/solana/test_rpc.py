"""The JSON-RPC transport against a fake Solana node on 127.0.0.1 speaking the real wire shapes: each method's request
and parsed answer, preflight refusals with their logs, and every way of not answering (a hang past the timeout, an
HTTP error, a node error, nothing listening) as ``BrokerUnavailable``; then the broker end to end over HTTP, where an
answer lost after the node executed the transaction is resolved by its signature, not by a second transaction."""

from __future__ import annotations

import base64
import json
import socket
from pathlib import Path

import pytest
from solders.hash import Hash
from solders.keypair import Keypair
from solders.message import MessageV0
from solders.pubkey import Pubkey
from solders.system_program import TransferParams, transfer
from solders.transaction import VersionedTransaction

from mikey.errors import BrokerUnavailable, OrderRejected
from mikey.execution.solana.rpc import BlockhashExpired, RpcTransport, TransactionRefused, Transport
from tests.execution.solana.conftest import PROGRAM_ID, order
from tests.fakes.solana_rpc_server import CONTEXT, FakeRpc, Reply

BLOCKHASH = "EkSnNWid2cvwEVnVx9aBqawnmiCNiDgp3gUdkDPTKN1N"
PANIC_LOGS = ["Program C2T3UnvGdHwEkspXJG7JyAhwo6VKQEKjN6eCq69guYSw invoke [1]",
              "Program log: Instruction: OpenPosition",
              "Program log: panicked at programs/quantdesk-perp-dex/src/margin.rs:38:37:",
              "attempt to subtract with overflow",
              "Program C2T3UnvGdHwEkspXJG7JyAhwo6VKQEKjN6eCq69guYSw failed: SBF program panicked"]


def a_transaction() -> VersionedTransaction:
    payer = Keypair()
    ix = transfer(TransferParams(from_pubkey=payer.pubkey(), to_pubkey=Keypair().pubkey(), lamports=1))
    return VersionedTransaction(MessageV0.try_compile(payer.pubkey(), [ix], [], Hash.from_string(BLOCKHASH)), [payer])


@pytest.fixture
def fake():
    with FakeRpc() as server:
        yield server


@pytest.fixture
def rpc(fake: FakeRpc):
    transport = RpcTransport(fake.url, commitment="confirmed", timeout=2.0)
    yield transport
    transport.close()


def test_rpc_transport_is_a_transport(rpc: RpcTransport) -> None:
    assert isinstance(rpc, Transport)


def test_latest_blockhash(fake: FakeRpc, rpc: RpcTransport) -> None:
    fake.script("getLatestBlockhash", Reply(result={"context": CONTEXT, "value": {
        "blockhash": BLOCKHASH, "lastValidBlockHeight": 320_000_150}}))
    assert str(rpc.latest_blockhash()) == BLOCKHASH
    method, params = fake.requests[-1]
    assert method == "getLatestBlockhash" and params[0]["commitment"] == "confirmed"


def test_simulate_reports_the_program_error_and_logs(fake: FakeRpc, rpc: RpcTransport) -> None:
    fake.script("simulateTransaction", Reply(result={"context": CONTEXT, "value": {
        "err": {"InstructionError": [0, "ProgramFailedToComplete"]}, "accounts": None, "logs": PANIC_LOGS,
        "returnData": None, "unitsConsumed": 14340, "innerInstructions": None, "replacementBlockhash": None,
        "loadedAccountsDataSize": 413, "fee": 5000}}))
    tx = a_transaction()
    simulation = rpc.simulate(tx)
    assert not simulation.ok
    assert simulation.err == "instruction 0 failed: ProgramFailedToComplete"
    assert simulation.logs == tuple(PANIC_LOGS) and simulation.units == 14340
    method, params = fake.requests[-1]
    assert method == "simulateTransaction" and base64.b64decode(params[0]) == bytes(tx)
    assert params[1]["sigVerify"] is False and params[1]["encoding"] == "base64"


def test_simulate_with_an_unknown_blockhash(fake: FakeRpc, rpc: RpcTransport) -> None:
    fake.script("simulateTransaction", Reply(result={"context": CONTEXT, "value": {
        "err": "BlockhashNotFound", "accounts": None, "logs": [], "returnData": None, "unitsConsumed": 0}}))
    with pytest.raises(BlockhashExpired):
        rpc.simulate(a_transaction())


def test_send_returns_the_signature(fake: FakeRpc, rpc: RpcTransport) -> None:
    tx = a_transaction()
    fake.script("sendTransaction", Reply(result=str(tx.signatures[0])))
    assert rpc.send(tx) == tx.signatures[0]
    method, params = fake.requests[-1]
    assert method == "sendTransaction" and base64.b64decode(params[0]) == bytes(tx)
    assert params[1]["skipPreflight"] is False and params[1]["preflightCommitment"] == "confirmed"


def preflight_failure(err: object, logs: list[str]) -> dict:
    return {"code": -32002, "message": "Transaction simulation failed: Error processing Instruction 0",
            "data": {"accounts": None, "err": err, "logs": logs, "returnData": None, "unitsConsumed": 14340,
                     "innerInstructions": None}}


def test_a_preflight_refusal_carries_the_programs_logs(fake: FakeRpc, rpc: RpcTransport) -> None:
    fake.script("sendTransaction", Reply(error=preflight_failure({"InstructionError": [0, {"Custom": 6000}]},
                                                                 PANIC_LOGS)))
    with pytest.raises(TransactionRefused) as refused:
        rpc.send(a_transaction())
    assert isinstance(refused.value, OrderRejected)
    assert refused.value.reason == "instruction 0 failed: custom program error 6000"
    assert refused.value.logs == PANIC_LOGS


def test_send_of_an_already_processed_transaction_is_its_signature(fake: FakeRpc, rpc: RpcTransport) -> None:
    tx = a_transaction()
    fake.script("sendTransaction", Reply(error=preflight_failure("AlreadyProcessed", [])))
    assert rpc.send(tx) == tx.signatures[0]


def test_send_with_an_expired_blockhash(fake: FakeRpc, rpc: RpcTransport) -> None:
    fake.script("sendTransaction", Reply(error=preflight_failure("BlockhashNotFound", [])))
    with pytest.raises(BlockhashExpired):
        rpc.send(a_transaction())


def test_signature_statuses(fake: FakeRpc, rpc: RpcTransport) -> None:
    tx = a_transaction()
    fake.script("getSignatureStatuses", Reply(result={"context": CONTEXT, "value": [{
        "slot": 341_197_000, "confirmations": 3, "err": None, "status": {"Ok": None},
        "confirmationStatus": "confirmed"}]}))
    status = rpc.signature_status(tx.signatures[0])
    assert status is not None and status.err is None and status.slot == 341_197_000
    assert status.reached("processed") and status.reached("confirmed") and not status.reached("finalized")
    method, params = fake.requests[-1]
    assert params == [[str(tx.signatures[0])], {"searchTransactionHistory": True}]

    failed = {"InstructionError": [0, {"Custom": 6024}]}
    fake.script("getSignatureStatuses", Reply(result={"context": CONTEXT, "value": [{
        "slot": 5, "confirmations": None, "err": failed, "status": {"Err": failed},
        "confirmationStatus": "finalized"}]}))
    status = rpc.signature_status(tx.signatures[0])
    assert status is not None and status.err == "instruction 0 failed: custom program error 6024"

    fake.script("getSignatureStatuses", Reply(result={"context": CONTEXT, "value": [None]}))
    assert rpc.signature_status(tx.signatures[0]) is None


def test_account_info(fake: FakeRpc, rpc: RpcTransport) -> None:
    owner = Pubkey.from_string(PROGRAM_ID)
    fake.script("getAccountInfo", Reply(result={"context": CONTEXT, "value": {
        "data": [base64.b64encode(b"\x01\x02\x03").decode(), "base64"], "executable": False, "lamports": 3_723_600,
        "owner": str(owner), "rentEpoch": 18446744073709551615, "space": 3}}))
    account = rpc.get_account(owner)
    assert account is not None and bytes(account.data) == b"\x01\x02\x03" and account.owner == owner
    assert fake.requests[-1][1][1]["encoding"] == "base64"
    fake.script("getAccountInfo", Reply(result={"context": CONTEXT, "value": None}))
    assert rpc.get_account(owner) is None


def test_a_hang_past_the_timeout_is_broker_unavailable(fake: FakeRpc) -> None:
    transport = RpcTransport(fake.url, timeout=0.3)
    fake.script("sendTransaction", Reply(hang=5.0))
    with pytest.raises(BrokerUnavailable, match="did not answer"):
        transport.send(a_transaction())
    transport.close()


@pytest.mark.parametrize("reply", [
    Reply(status=503),
    Reply(error={"code": -32005, "message": "Node is unhealthy", "data": {"numSlotsBehind": 42}}),
])
def test_http_and_node_errors_are_broker_unavailable(fake: FakeRpc, rpc: RpcTransport, reply: Reply) -> None:
    fake.script("getLatestBlockhash", reply)
    with pytest.raises(BrokerUnavailable):
        rpc.latest_blockhash()


def test_nothing_listening_is_broker_unavailable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    transport = RpcTransport(f"http://127.0.0.1:{port}", timeout=1.0)
    with pytest.raises(BrokerUnavailable, match="unreachable"):
        transport.get_account(Pubkey.default())
    transport.close()


# The broker over HTTP, against the real program in LiteSVM behind the fake node ----------------------------------

@pytest.fixture
def node(program_path: Path, idl, keypair: Keypair):
    from mikey.execution.solana.sandbox import LiteSVMTransport

    backend = LiteSVMTransport(program_path, idl, None, wallet=keypair.pubkey())
    backend.publish_price("BTC", 60_000.0)
    with FakeRpc(backend) as server:
        yield server


def rpc_broker(node: FakeRpc, keypair: Keypair, idl, tmp_path: Path, timeout: float = 2.0):
    from mikey.execution.solana.broker import SolanaBroker
    from mikey.execution.solana.journal import OrderJournal

    return SolanaBroker(RpcTransport(node.url, timeout=timeout), keypair, PROGRAM_ID, idl,
                        journal=OrderJournal(tmp_path / "orders.sqlite"), poll_interval=0.01)


def test_broker_over_rpc_opens_a_short(node: FakeRpc, keypair: Keypair, idl, tmp_path: Path) -> None:
    broker = rpc_broker(node, keypair, idl, tmp_path)
    fill = broker.submit(order("rpc-1"), oracle_price=60_000.0)
    assert fill.broker_ref == node.sent[0] and fill.price == 60_000.0 and fill.size == 0.5
    methods = [method for method, _ in node.requests]
    assert methods.index("simulateTransaction") < methods.index("sendTransaction")
    assert broker.position(fill.position_id).liquidation_price == 3_060_000.0
    broker.close()


def test_a_lost_send_answer_is_resolved_by_signature(node: FakeRpc, keypair: Keypair, idl, tmp_path: Path) -> None:
    broker = rpc_broker(node, keypair, idl, tmp_path, timeout=0.5)
    node.script("sendTransaction", Reply(hang=3.0, after_backend=True))  # executed, answer lost
    request = order("rpc-lost")

    with pytest.raises(BrokerUnavailable):
        broker.submit(request, oracle_price=60_000.0)
    assert len(node.sent) == 1

    fill = broker.submit(request, oracle_price=60_000.0)
    assert fill.broker_ref == node.sent[0]
    assert len(node.sent) == 1  # the retry re-checked the signature; nothing new was signed or executed
    assert broker.lookup("rpc-lost") == fill
    assert [p.id for p in broker.positions("local")] == [fill.position_id]
    broker.close()


def test_a_rejected_order_over_rpc_sends_nothing(node: FakeRpc, keypair: Keypair, idl, tmp_path: Path) -> None:
    broker = rpc_broker(node, keypair, idl, tmp_path)
    with pytest.raises(OrderRejected, match="attempt to subtract with overflow"):
        broker.submit(order("rpc-long", side="long"), oracle_price=60_000.0)
    assert "sendTransaction" not in [method for method, _ in node.requests]
    assert node.sent == []
    assert json.dumps(node.requests)  # every request was plain JSON
    broker.close()
