"""The sandbox cluster: the QuantDesk program's real bytecode in an in-process LiteSVM, kept on disk between commands.

There is no market-initialisation instruction in the program's IDL, so the sandbox writes the Market account of each
MIKEY market and the wallet's UserAccount directly (discriminator + Borsh fields from the IDL), at the addresses a
real deployment uses (``program.py``). The field values are the ones the deployed binary needs to open a position:

- UserAccount: ``total_collateral == available_margin`` (the program panics when available exceeds total, and
  subtracts ``total - available`` to find the margin in use), ``max_leverage = 100`` (the program casts it to u8, so
  the ``1000`` its own initialiser writes would allow 232x), ``is_active``, ``max_positions = 50``;
- Market: large vAMM reserves (closing a short subtracts its notional from ``quote_reserve``, with overflow checks),
  ``max_leverage = 100``, ``is_active``, and a fresh oracle price: ``close_position`` refuses a price older than
  300 s of the cluster clock, so the sandbox (acting as the market's oracle keeper) publishes the order's price and
  keeps the clock at wall time.

State lives in ``<sandbox_dir>/accounts.json``::

    {"version": 1, "program_id": "<base58>", "sessions": <int>,
     "accounts": {"<pubkey>": {"lamports": int, "owner": "<base58>", "executable": bool, "rent_epoch": int,
                               "data": "<base64>"}},
     "signatures": {"<signature>": {"slot": int, "err": str | null, "logs": [str]}}}

``accounts`` holds every account the program owns plus the wallet's SOL account; ``signatures`` is the sandbox's
transaction history, so a signed transaction sent again in a later command is recognised as already processed.
LiteSVM's blockhashes are the same in every process, so each new session expires ``sessions`` of them: a transaction
signed in an earlier session can never land later, as on a real cluster. Every operation runs under a file lock and
reloads the file if another process changed it.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from solders.account import Account
from solders.clock import Clock
from solders.hash import Hash
from solders.litesvm import LiteSVM
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.transaction import VersionedTransaction
from solders.transaction_metadata import FailedTransactionMetadata
from solders.transaction_status import TransactionErrorInstructionError

from mikey.errors import ConfigError
from mikey.execution.solana.idl import Idl
from mikey.execution.solana.program import FIXED_POINT, market_address, to_fixed, user_account_address
from mikey.execution.solana.rpc import (
    BlockhashExpired,
    Simulation,
    TransactionRefused,
    TxStatus,
    describe_error,
    is_already_processed,
    is_blockhash_error,
)

STATE_VERSION = 1
STATE_FILE = "accounts.json"
LAMPORTS_PER_SOL = 1_000_000_000
DEFAULT_COLLATERAL_USD = 1_000_000.0
DEFAULT_AIRDROP_SOL = 100.0
SANDBOX_MAX_LEVERAGE = 100
MARKET_BASE_RESERVE = 10**12
MARKET_QUOTE_RESERVE = 10**15
MARKET_K = 10**18


class LiteSVMTransport:
    """A ``Transport`` over an in-process LiteSVM running the program binary at ``program_path``."""

    def __init__(self, program_path: Path, idl: Idl, state_dir: Path | None, *, wallet: Pubkey,
                 markets: Sequence[str] = ("BTC", "ETH", "SOL"), collateral_usd: float = DEFAULT_COLLATERAL_USD,
                 airdrop_sol: float = DEFAULT_AIRDROP_SOL, clock: Callable[[], float] = time.time) -> None:
        program_path = Path(program_path)
        if not program_path.is_file():
            raise ConfigError(f"the QuantDesk program binary {program_path} does not exist: set "
                              "MIKEY_QUANTDESK_PROGRAM to the path of quantdesk_perp_dex.so")
        self.idl = idl
        self.program_id = idl.program_id
        self.wallet = wallet
        self.markets = tuple(markets)
        self.collateral_usd = collateral_usd
        self.airdrop_sol = airdrop_sol
        self._clock = clock
        self._state_dir = state_dir
        self._stamp: tuple[int, int] | None = None
        self._signatures: dict[str, dict[str, Any]] = {}
        self._sessions = 0
        self.svm = LiteSVM()
        self.svm.add_program_from_file(self.program_id, program_path)
        with self._locked():
            self._sessions += 1
            for _ in range(self._sessions):
                self.svm.expire_blockhash()
            self._bootstrap()
            self._save()

    # Transport ---------------------------------------------------------------------------------------------------
    def latest_blockhash(self) -> Hash:
        return self.svm.latest_blockhash()

    def simulate(self, tx: VersionedTransaction) -> Simulation:
        with self._locked():
            self._tick()
            result = self.svm.simulate_transaction(tx)
        if isinstance(result, FailedTransactionMetadata):
            err = result.err()
            logs = list(result.meta().logs())
            if is_blockhash_error(err):
                raise BlockhashExpired(describe_error(err), logs)
            return Simulation(describe_error(err), tuple(logs), result.meta().compute_units_consumed())
        meta = result.meta()
        return Simulation(None, tuple(meta.logs()), meta.compute_units_consumed())

    def send(self, tx: VersionedTransaction) -> Signature:
        signature = tx.signatures[0]
        with self._locked():
            if str(signature) in self._signatures:
                return signature  # processed in this or an earlier session: never twice
            self._tick()
            result = self.svm.send_transaction(tx)
            if isinstance(result, FailedTransactionMetadata):
                err = result.err()
                logs = list(result.meta().logs())
                if is_already_processed(err):
                    return signature
                if is_blockhash_error(err):
                    raise BlockhashExpired(describe_error(err), logs)
                if not isinstance(err, TransactionErrorInstructionError):
                    raise TransactionRefused(describe_error(err), logs)  # refused before executing: no fee taken
                self._record(signature, describe_error(err), logs)  # executed and failed: it landed, fee paid
            else:
                self._record(signature, None, list(result.logs()))
            self._save()
        return signature

    def signature_status(self, signature: Signature) -> TxStatus | None:
        with self._locked():
            entry = self._signatures.get(str(signature))
        if entry is None:
            return None
        return TxStatus(entry["slot"], "finalized", entry["err"], tuple(entry["logs"]))

    def get_account(self, pubkey: Pubkey) -> Account | None:
        with self._locked():
            return self.svm.get_account(pubkey)

    def close(self) -> None:
        """Nothing to release: every operation already saved its state."""

    # The sandbox as the markets' oracle keeper --------------------------------------------------------------------
    def publish_price(self, symbol: str, price: float) -> None:
        """Write ``price`` into the market's oracle fields, stamped with the sandbox clock's now."""
        address, _ = market_address(self.program_id, symbol)
        with self._locked():
            account = self.svm.get_account(address)
            if account is None:
                raise ConfigError(f"the sandbox has no {symbol} market; markets: {', '.join(self.markets)}")
            fields = self.idl.decode_account("Market", account.data)
            fields.update(last_oracle_price=to_fixed(price), last_oracle_update=self._now())
            data = self.idl.encode_account("Market", fields)
            self.svm.set_account(address, Account(account.lamports, data, account.owner, account.executable,
                                                  account.rent_epoch))
            self._save()

    def balance(self, pubkey: Pubkey) -> int:
        with self._locked():
            return self.svm.get_balance(pubkey) or 0

    # Bootstrap -----------------------------------------------------------------------------------------------------
    def _bootstrap(self) -> None:
        now = self._now()
        for symbol in self.markets:
            address, bump = market_address(self.program_id, symbol)
            if self.svm.get_account(address) is None:
                self._create(address, self.idl.encode_account("Market", {
                    "base_asset": symbol, "quote_asset": "USDT", "base_reserve": MARKET_BASE_RESERVE,
                    "quote_reserve": MARKET_QUOTE_RESERVE, "k": MARKET_K, "funding_rate": 0,
                    "last_funding_time": now, "funding_interval": 3600, "authority": self.wallet,
                    "max_leverage": SANDBOX_MAX_LEVERAGE, "initial_margin_ratio": 1000,
                    "maintenance_margin_ratio": 500, "is_active": True, "last_oracle_price": 0,
                    "last_oracle_update": 0, "bump": bump}))
        address, bump = user_account_address(self.program_id, self.wallet)
        if self.svm.get_account(address) is None:
            collateral = self.collateral_usd * FIXED_POINT
            self._create(address, self.idl.encode_account("UserAccount", {
                "authority": self.wallet, "account_index": 0, "total_collateral": int(collateral),
                "total_positions": 0, "total_orders": 0, "max_positions": 50, "initial_margin_requirement": 0,
                "maintenance_margin_requirement": 0, "available_margin": int(collateral), "account_health": 10000,
                "liquidation_price": 0, "liquidation_threshold": 2000, "max_leverage": SANDBOX_MAX_LEVERAGE,
                "total_funding_paid": 0, "total_funding_received": 0, "total_fees_paid": 0,
                "total_rebates_earned": 0, "created_at": now, "last_activity": now, "is_active": True, "bump": bump}))
        if self.svm.get_account(self.wallet) is None and self.airdrop_sol > 0:
            result = self.svm.airdrop(self.wallet, int(self.airdrop_sol * LAMPORTS_PER_SOL))
            if isinstance(result, FailedTransactionMetadata):
                raise ConfigError(f"sandbox airdrop failed: {describe_error(result.err())}")

    def _create(self, address: Pubkey, data: bytes) -> None:
        lamports = self.svm.minimum_balance_for_rent_exemption(len(data))
        self.svm.set_account(address, Account(lamports, data, self.program_id, False, 0))

    def _now(self) -> int:
        return int(self._clock())

    def _tick(self) -> None:
        """Keep the cluster clock at wall time: the program stamps positions and checks oracle age with it."""
        clock = self.svm.get_clock()
        self.svm.set_clock(Clock(clock.slot, clock.epoch_start_timestamp, clock.epoch, clock.leader_schedule_epoch,
                                 self._now()))

    def _record(self, signature: Signature, err: str | None, logs: list[str]) -> None:
        self._signatures[str(signature)] = {"slot": self.svm.get_clock().slot, "err": err, "logs": logs}

    # Persistence ---------------------------------------------------------------------------------------------------
    @contextmanager
    def _locked(self) -> Iterator[None]:
        if self._state_dir is None:
            yield
            return
        self._state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._state_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._reload_if_changed()
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _state_path(self) -> Path:
        assert self._state_dir is not None
        return self._state_dir / STATE_FILE

    def _reload_if_changed(self) -> None:
        path = self._state_path()
        try:
            stat = path.stat()
        except FileNotFoundError:
            return
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp == self._stamp:
            return
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"the sandbox state {path} is unreadable ({exc}); remove it to start over") from exc
        if state.get("version") != STATE_VERSION or state.get("program_id") != str(self.program_id):
            raise ConfigError(f"the sandbox state {path} was made for another program or format "
                              f"({state.get('program_id')}, v{state.get('version')}); remove it to start over")
        for key, entry in state["accounts"].items():
            self.svm.set_account(Pubkey.from_string(key), Account(
                entry["lamports"], base64.b64decode(entry["data"]), Pubkey.from_string(entry["owner"]),
                entry["executable"], entry["rent_epoch"]))
        self._signatures = dict(state.get("signatures", {}))
        self._sessions = max(self._sessions, int(state.get("sessions", 0)))
        self._stamp = stamp

    def _save(self) -> None:
        if self._state_dir is None:
            return
        accounts = dict(self.svm.get_program_accounts(self.program_id))
        wallet_account = self.svm.get_account(self.wallet)
        if wallet_account is not None:
            accounts[self.wallet] = wallet_account
        state = {
            "version": STATE_VERSION,
            "program_id": str(self.program_id),
            "sessions": self._sessions,
            "accounts": {str(key): {"lamports": acc.lamports, "owner": str(acc.owner), "executable": acc.executable,
                                    "rent_epoch": acc.rent_epoch, "data": base64.b64encode(bytes(acc.data)).decode()}
                         for key, acc in accounts.items()},
            "signatures": self._signatures,
        }
        path = self._state_path()
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        tmp.write_text(json.dumps(state, indent=1), encoding="utf-8")
        os.replace(tmp, path)
        stat = path.stat()
        self._stamp = (stat.st_mtime_ns, stat.st_size)
