"""How transactions reach a cluster: the ``Transport`` protocol, and its JSON-RPC implementation over httpx.

The broker talks to a ``Transport``, never to HTTP or to LiteSVM, so the same submit/confirm/reconcile code runs
against a real validator and against the in-process sandbox (``sandbox.LiteSVMTransport``). Requests and responses
are solders' typed JSON-RPC models, so the wire shapes are Solana's own rather than hand-written dicts.

Failure semantics the broker relies on:

- ``BrokerUnavailable``: no answer (timeout, connection error, HTTP 5xx): whether a sent transaction executed is
  unknown, and the broker re-checks its signature instead of signing a new one;
- ``TransactionRefused`` (an ``OrderRejected``): the cluster refused the transaction before executing it (preflight
  failed, no SOL for the fee); ``BlockhashExpired`` is the one refusal after which a *new* transaction is safe,
  because the old one can never land.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

import httpx
from solders.account import Account
from solders.account_decoder import UiAccountEncoding
from solders.commitment_config import CommitmentLevel
from solders.hash import Hash
from solders.pubkey import Pubkey
from solders.rpc.config import (
    RpcAccountInfoConfig,
    RpcContextConfig,
    RpcSendTransactionConfig,
    RpcSignatureStatusConfig,
    RpcSimulateTransactionConfig,
)
from solders.rpc.errors import SendTransactionPreflightFailureMessage
from solders.rpc.requests import (
    GetAccountInfo,
    GetLatestBlockhash,
    GetSignatureStatuses,
    SendVersionedTransaction,
    SimulateVersionedTransaction,
)
from solders.rpc.responses import (
    GetAccountInfoResp,
    GetLatestBlockhashResp,
    GetSignatureStatusesResp,
    SendTransactionResp,
    SimulateTransactionResp,
)
from solders.signature import Signature
from solders.transaction import VersionedTransaction
from solders.transaction_status import (
    InstructionErrorCustom,
    InstructionErrorFieldless,
    TransactionConfirmationStatus,
    TransactionErrorFieldless,
    TransactionErrorInstructionError,
)

from mikey.errors import BrokerUnavailable, OrderRejected

Commitment = Literal["processed", "confirmed", "finalized"]
COMMITMENT_RANK: dict[str, int] = {"processed": 0, "confirmed": 1, "finalized": 2}
_LEVELS = {"processed": CommitmentLevel.Processed, "confirmed": CommitmentLevel.Confirmed,
           "finalized": CommitmentLevel.Finalized}
_STATUS_NAMES = ((TransactionConfirmationStatus.Processed, "processed"),  # solders' enum is unhashable
                 (TransactionConfirmationStatus.Confirmed, "confirmed"),
                 (TransactionConfirmationStatus.Finalized, "finalized"))

_FRIENDLY = {
    "AccountNotFound": "the fee payer has no SOL (its account does not exist): fund the wallet",
    "InsufficientFundsForFee": "the fee payer has too little SOL to pay the transaction fee",
    "InsufficientFundsForRent": "an account would be left below the rent-exempt minimum",
    "BlockhashNotFound": "the transaction's blockhash expired or is unknown to the cluster",
    "AlreadyProcessed": "this transaction was already processed",
    "SignatureFailure": "a signature does not verify",
}


class TransactionRefused(OrderRejected):
    """The cluster refused a transaction before executing it; ``logs`` are the preflight's, when there are any."""

    def __init__(self, reason: str, logs: Sequence[str] = ()) -> None:
        self.reason = reason
        self.logs = list(logs)
        super().__init__(reason)


class BlockhashExpired(TransactionRefused):
    """The transaction's blockhash is no longer (or not yet) valid: it can never execute as signed."""


@dataclass(frozen=True)
class Simulation:
    """What the cluster says the transaction would do now."""

    err: str | None
    logs: tuple[str, ...] = ()
    units: int | None = None

    @property
    def ok(self) -> bool:
        return self.err is None


@dataclass(frozen=True)
class TxStatus:
    """A landed transaction: its slot, how settled it is, and its error if it failed (a failed transaction landed
    too: it paid its fee and changed nothing else)."""

    slot: int
    commitment: Commitment | None
    err: str | None
    logs: tuple[str, ...] = ()

    def reached(self, commitment: Commitment) -> bool:
        return self.commitment is not None and COMMITMENT_RANK[self.commitment] >= COMMITMENT_RANK[commitment]


@runtime_checkable
class Transport(Protocol):
    """One cluster, as the broker needs it."""

    def latest_blockhash(self) -> Hash:
        ...

    def simulate(self, tx: VersionedTransaction) -> Simulation:
        """Raises ``BlockhashExpired`` when the blockhash is unknown; other failures are in the result."""
        ...

    def send(self, tx: VersionedTransaction) -> Signature:
        """Hand the signed transaction to the cluster. Sending the same signed bytes twice executes them at most once
        (the signature is the transaction's identity)."""
        ...

    def signature_status(self, signature: Signature) -> TxStatus | None:
        """None when the cluster has no record of the signature (not landed, or never sent)."""
        ...

    def get_account(self, pubkey: Pubkey) -> Account | None:
        ...

    def close(self) -> None:
        ...


def describe_error(err: Any) -> str:
    """A readable name for a solders ``TransactionError`` (fieldless or instruction error)."""
    if err is None:
        return "ok"
    text = str(err)
    if isinstance(err, TransactionErrorFieldless):
        name = text.rsplit(".", 1)[-1]
        return _FRIENDLY.get(name, name)
    if isinstance(err, TransactionErrorInstructionError):
        inner = err.err
        detail = (f"custom program error {inner.code}" if isinstance(inner, InstructionErrorCustom)
                  else str(inner).rsplit(".", 1)[-1] if isinstance(inner, InstructionErrorFieldless)
                  else re.sub(r"\s+", "", str(inner)))
        return f"instruction {err.index} failed: {detail}"
    return re.sub(r"\s+", "", text).removeprefix("TransactionError")


def is_blockhash_error(err: Any) -> bool:
    return isinstance(err, TransactionErrorFieldless) and err == TransactionErrorFieldless.BlockhashNotFound


def is_already_processed(err: Any) -> bool:
    return isinstance(err, TransactionErrorFieldless) and err == TransactionErrorFieldless.AlreadyProcessed


class RpcTransport:
    """A Solana JSON-RPC endpoint. Sends go out with preflight on (the node refuses what would fail, with logs) and
    without the node's own retries beyond the blockhash's life, which is what lets the broker re-check a signature."""

    def __init__(self, url: str, *, commitment: Commitment = "confirmed", timeout: float = 10.0,
                 client: httpx.Client | None = None) -> None:
        self.url = url
        self.commitment: Commitment = commitment
        self.timeout = timeout
        self._client = client or httpx.Client(timeout=timeout)
        self._owns_client = client is None

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    def _call(self, request: Any, parser: Any) -> Any:
        method = type(request).__name__
        try:
            response = self._client.post(self.url, content=request.to_json(),
                                         headers={"Content-Type": "application/json"}, timeout=self.timeout)
        except httpx.TimeoutException as exc:
            raise BrokerUnavailable(f"Solana RPC {self.url} did not answer {method} within {self.timeout:g}s") from exc
        except httpx.HTTPError as exc:
            raise BrokerUnavailable(f"Solana RPC {self.url} unreachable ({method}): {exc}") from exc
        if response.status_code != 200:
            raise BrokerUnavailable(f"Solana RPC {self.url} answered {method} with HTTP {response.status_code}")
        try:
            return parser.from_json(response.text)
        except ValueError as exc:
            raise BrokerUnavailable(f"Solana RPC {self.url} sent a malformed {method} answer: {exc}") from exc

    def _expect(self, parsed: Any, kind: type, method: str) -> Any:
        if not isinstance(parsed, kind):
            message = getattr(parsed, "message", str(parsed))
            raise BrokerUnavailable(f"Solana RPC {self.url} refused {method}: {message}")
        return parsed

    def latest_blockhash(self) -> Hash:
        parsed = self._call(GetLatestBlockhash(RpcContextConfig(commitment=_LEVELS[self.commitment])),
                            GetLatestBlockhashResp)
        return self._expect(parsed, GetLatestBlockhashResp, "getLatestBlockhash").value.blockhash

    def simulate(self, tx: VersionedTransaction) -> Simulation:
        config = RpcSimulateTransactionConfig(sig_verify=False, replace_recent_blockhash=False,
                                              commitment=_LEVELS[self.commitment])
        parsed = self._call(SimulateVersionedTransaction(tx, config), SimulateTransactionResp)
        value = self._expect(parsed, SimulateTransactionResp, "simulateTransaction").value
        if is_blockhash_error(value.err):
            raise BlockhashExpired(describe_error(value.err), value.logs or [])
        err = None if value.err is None else describe_error(value.err)
        return Simulation(err, tuple(value.logs or ()), value.units_consumed)

    def send(self, tx: VersionedTransaction) -> Signature:
        config = RpcSendTransactionConfig(skip_preflight=False, preflight_commitment=_LEVELS[self.commitment])
        parsed = self._call(SendVersionedTransaction(tx, config), SendTransactionResp)
        if isinstance(parsed, SendTransactionResp):
            return parsed.value
        if isinstance(parsed, SendTransactionPreflightFailureMessage):
            err, logs = parsed.data.err, list(parsed.data.logs or [])
            if is_already_processed(err):
                return tx.signatures[0]
            if is_blockhash_error(err):
                raise BlockhashExpired(describe_error(err), logs)
            raise TransactionRefused(describe_error(err) if err is not None else parsed.message, logs)
        # Any other JSON-RPC error: the node answered and did not take the transaction.
        raise TransactionRefused(f"Solana RPC refused the transaction: {getattr(parsed, 'message', parsed)}")

    def signature_status(self, signature: Signature) -> TxStatus | None:
        config = RpcSignatureStatusConfig(search_transaction_history=True)
        parsed = self._call(GetSignatureStatuses([signature], config), GetSignatureStatusesResp)
        (status,) = self._expect(parsed, GetSignatureStatusesResp, "getSignatureStatuses").value
        if status is None:
            return None
        commitment: Commitment | None = next(
            (name for level, name in _STATUS_NAMES if status.confirmation_status == level), None)
        if commitment is None:  # old nodes: no confirmation_status; no confirmations count means rooted
            commitment = ("finalized" if status.confirmations is None
                          else "confirmed" if status.confirmations > 0 else "processed")
        err = None if status.err is None else describe_error(status.err)
        return TxStatus(status.slot, commitment, err)

    def get_account(self, pubkey: Pubkey) -> Account | None:
        config = RpcAccountInfoConfig(encoding=UiAccountEncoding.Base64, commitment=_LEVELS[self.commitment])
        parsed = self._call(GetAccountInfo(pubkey, config), GetAccountInfoResp)
        return self._expect(parsed, GetAccountInfoResp, "getAccountInfo").value
