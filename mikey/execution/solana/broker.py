"""``SolanaBroker``: approved orders as QuantDesk program transactions, executed at most once each.

One order's life: validate (whole-number leverage, 6-decimal sizes, the price bound) -> journal it with its
deterministic Position slot -> build and sign with a fresh blockhash -> simulate (a failure is ``OrderRejected`` with
the program's own message; nothing is sent) -> journal the signed transaction -> send -> confirm -> read the Position
account back. The journal (``journal.py``) is what makes a retry safe: a second ``submit`` of the same client_id
re-checks the recorded signature, re-sends the *same* signed bytes while their blockhash lives, and signs anew only
once the old transaction can never land.

Sign-only mode (``sign_only=True``) stops after the simulation and raises ``SignOnly``, a ``BrokerUnavailable``
carrying the base64 transaction: whether the order executes is up to whoever broadcasts it, and ``lookup`` finds the
fill once it lands (by its signature, or by the Position account for an external fee payer's unsigned transaction).

``open_position`` takes its entry price as an argument (the program trusts its caller), so the broker passes the
oracle price MIKEY's gates validated; a close fills at the market account's on-chain oracle price, checked against the
approved bound before signing.

What the program does not do, the broker does not pretend: there is no trading fee (``fee`` is 0; the network fee is
paid in SOL), no partial close (``reduce`` is rejected), and the liquidation price reported is the one the program
wrote, even though this binary computes it wrongly (about 1 + 500/leverage times the entry for a short).
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from solders.keypair import Keypair
from solders.message import MessageV0
from solders.null_signer import NullSigner
from solders.presigner import Presigner
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.transaction import VersionedTransaction

from mikey.domain.utc import utc_now
from mikey.errors import BrokerUnavailable, ConfigError, InvalidInput, NotFound, OrderRejected
from mikey.execution.broker import BrokerPosition, Fill, OrderRequest
from mikey.execution.solana.idl import Idl
from mikey.execution.solana.journal import OrderJournal, OrderRecord
from mikey.execution.solana.program import (
    U64_MAX,
    from_fixed,
    from_unix,
    market_address,
    to_fixed,
    user_account_address,
)
from mikey.execution.solana.rpc import (
    BlockhashExpired,
    Commitment,
    TransactionRefused,
    Transport,
    TxStatus,
)
from mikey.market import symbols
from mikey.settings import Settings

Signer = Keypair | Presigner | NullSigner
_SIDES = {"long": "Long", "short": "Short"}


class SignOnly(BrokerUnavailable):
    """Sign-only mode: the order was built, simulated and signed, not sent. ``transaction`` is the base64 wire
    transaction to broadcast with another wallet; until it lands (or its blockhash expires) the outcome is unknown,
    which is why this is a ``BrokerUnavailable``: reconcile with ``lookup(client_id)``."""

    def __init__(self, client_id: str, transaction: str, signature: str | None) -> None:
        self.client_id = client_id
        self.transaction = transaction
        self.signature = signature
        super().__init__(f"order {client_id} is signed but not sent (sign-only mode); broadcast it with your wallet: "
                         f"{transaction}")


class SolanaBroker:
    """The ``Broker`` for the QuantDesk perp program, over any ``Transport`` (JSON-RPC or the LiteSVM sandbox)."""

    def __init__(self, transport: Transport, signer: Signer, program_id: Pubkey | str, idl: Idl, *,
                 sign_only: bool = False, commitment: Commitment = "confirmed", journal: OrderJournal | None = None,
                 name: str = "solana", confirm_timeout: float = 30.0, poll_interval: float = 0.5,
                 clock: Callable[[], datetime] = utc_now) -> None:
        program = program_id if isinstance(program_id, Pubkey) else Pubkey.from_string(program_id)
        if idl.program_id != program:
            raise ConfigError(f"the IDL is bound to {idl.program_id}, the broker to {program}")
        self.name = name
        self.transport = transport
        self.signer = signer
        self.program_id = program
        self.idl = idl
        self.sign_only = sign_only
        self.commitment: Commitment = commitment
        self.journal = journal or OrderJournal(None)  # in memory: idempotent within this process only
        self.confirm_timeout = confirm_timeout
        self.poll_interval = poll_interval
        self._clock = clock
        self.wallet: Pubkey = signer.pubkey()
        self.user_account: Pubkey = user_account_address(program, self.wallet)[0]
        self._lock = threading.RLock()

    @classmethod
    def from_settings(cls, settings: Settings, *, passphrase: str | None = None) -> SolanaBroker:
        """``broker=solana``: JSON-RPC at ``solana_rpc_url``; ``broker=sandbox``: LiteSVM on ``quantdesk_program``,
        persisted under ``sandbox_dir``. The key is the wallet at ``wallet_path``, unlocked with ``passphrase`` or
        ``MIKEY_WALLET_PASSPHRASE`` or a prompt."""
        from mikey.execution.solana.wallet import load_keypair, passphrase_from_env_or_prompt

        if settings.broker not in ("solana", "sandbox"):
            raise ConfigError(f"SolanaBroker serves broker=solana or broker=sandbox, not {settings.broker!r}")
        if settings.broker == "sandbox" and settings.quantdesk_program is None:
            raise ConfigError("the sandbox broker runs the QuantDesk program's binary: set MIKEY_QUANTDESK_PROGRAM "
                              "to the path of quantdesk_perp_dex.so")
        idl = Idl.load(settings.quantdesk_program_id)
        keypair = load_keypair(settings.wallet_path, passphrase or passphrase_from_env_or_prompt(confirm=False))
        transport: Transport
        if settings.broker == "sandbox":
            from mikey.execution.solana.sandbox import LiteSVMTransport

            assert settings.quantdesk_program is not None
            transport = LiteSVMTransport(settings.quantdesk_program, idl, settings.sandbox_dir,
                                         wallet=keypair.pubkey(), markets=symbols.SUPPORTED)
            journal = OrderJournal(settings.sandbox_dir / "orders.sqlite")
        else:
            from mikey.execution.solana.rpc import RpcTransport

            transport = RpcTransport(settings.solana_rpc_url, commitment=settings.solana_commitment)
            journal = OrderJournal(settings.home / "solana-orders.sqlite")
        return cls(transport, keypair, settings.quantdesk_program_id, idl, sign_only=settings.solana_sign_only,
                   commitment=settings.solana_commitment, journal=journal, name=settings.broker)

    def close(self) -> None:
        self.transport.close()
        self.journal.close()

    # Broker: submit -------------------------------------------------------------------------------------------------
    def submit(self, order: OrderRequest, *, oracle_price: float) -> Fill:
        with self._lock:
            record = self.journal.get(order.client_id) or self._plan(order, oracle_price)
            if record.request != order.model_dump(mode="json"):
                raise OrderRejected(f"client id {order.client_id} was already used for an order with other terms")
            if record.fill is not None:
                return Fill.model_validate(record.fill)
            if record.state == "failed":
                raise OrderRejected(record.error or "the order's transaction failed on-chain")
            if record.tx is not None:
                fill = self._resume(record, order)
                if fill is not None:
                    return fill
            return self._execute(record, order, oracle_price)

    def _plan(self, order: OrderRequest, oracle_price: float) -> OrderRecord:
        self._validate(order, oracle_price)
        base = symbols.normalize(order.market) or order.market
        request = order.model_dump(mode="json")
        common = dict(client_id=order.client_id, user_id=order.user_id, kind=order.kind, request=request,
                      oracle_price=oracle_price, user_account=str(self.user_account))
        if order.kind == "open":
            market, _ = market_address(self.program_id, base)
            if self.transport.get_account(market) is None:
                raise OrderRejected(f"the QuantDesk program has no {base} market (no Market account at {market})")
            return self.journal.create(**common, market=base, position=None, context={"market": str(market)},
                                       position_for_index=lambda index: str(self._position_address(index)))
        position_id = order.position_id or ""
        try:
            position = self._read_position(self._parse_pubkey(position_id, OrderRejected))
        except InvalidInput as exc:
            raise OrderRejected(str(exc)) from None
        if position is None:
            raise OrderRejected(f"no QuantDesk position {position_id}")
        if position["user"] != self.wallet:
            raise OrderRejected(f"position {position_id} belongs to another wallet ({position['user']})")
        if position["size"] == 0 or position["status"] != "Open":
            raise OrderRejected(f"position {position_id} is already closed")
        if position["side"] != _SIDES[order.side]:
            raise OrderRejected(f"position {position_id} is a {position['side'].lower()}, not a {order.side}")
        context = {"market": str(position["market"]), "size": position["size"], "side": position["side"],
                   "entry_price": position["entry_price"]}
        return self.journal.create(**common, market=base, position=position_id, context=context)

    def _validate(self, order: OrderRequest, oracle_price: float) -> None:
        if order.kind == "reduce":
            raise OrderRejected("the QuantDesk program cannot reduce a position, only close it whole")
        if order.kind == "close":
            if not order.position_id:
                raise OrderRejected("a close needs the position's id (its Position account address)")
            return
        if symbols.normalize(order.market) is None:
            raise OrderRejected(f"the QuantDesk broker trades {', '.join(symbols.SUPPORTED)}, not {order.market!r}")
        if order.leverage != int(order.leverage) or order.leverage < 1:
            raise OrderRejected(f"leverage {order.leverage:g}x is not a whole number: the QuantDesk program takes "
                                "leverage as an integer (u16); approve a whole leverage such as "
                                f"{max(1, int(order.leverage))}x")
        size, price = to_fixed(order.size), to_fixed(oracle_price)
        if size <= 0:
            raise OrderRejected(f"size {order.size} is below the program's resolution of 0.000001")
        if price <= 0 or price > U64_MAX or size > U64_MAX or size * price // 1_000_000 > U64_MAX:
            raise OrderRejected(f"size {order.size} at {oracle_price} does not fit the program's 64-bit amounts")
        worse = oracle_price > order.price_bound if order.side == "long" else oracle_price < order.price_bound
        if worse:
            raise OrderRejected(f"price {oracle_price:g} is worse than the approved bound {order.price_bound:g} "
                                f"for a {order.side}")

    def _execute(self, record: OrderRecord, order: OrderRequest, oracle_price: float) -> Fill:
        """Sign a new transaction for ``record``, simulate it, journal it, send it and confirm it."""
        keeper = getattr(self.transport, "publish_price", None)
        if keeper is not None:  # the sandbox is its markets' oracle: the order's price is the market's price
            keeper(record.market, oracle_price)
        if order.kind == "close":
            self._check_close_price(record, order)
        tx = self._build(record, order, oracle_price)
        try:
            simulation = self.transport.simulate(tx)
        except BlockhashExpired:
            tx = self._build(record, order, oracle_price)  # the blockhash expired between fetch and simulate
            simulation = self.transport.simulate(tx)
        if not simulation.ok:
            raise OrderRejected(self._explain(simulation.logs, simulation.err))
        wire = base64.b64encode(bytes(tx)).decode("ascii")
        signature = tx.signatures[0]
        signed = signature != Signature.default()
        self.journal.update(record.client_id, state="signed", tx=wire, signature=str(signature) if signed else None)
        if self.sign_only:
            raise SignOnly(record.client_id, wire, str(signature) if signed else None)
        self._send(tx)
        return self._confirm(record, order, signature)

    def _build(self, record: OrderRecord, order: OrderRequest, oracle_price: float) -> VersionedTransaction:
        if order.kind == "open":
            args = {"position_index": record.position_index, "side": _SIDES[order.side],
                    "size": to_fixed(order.size), "leverage": int(order.leverage),
                    "entry_price": to_fixed(oracle_price)}
            accounts = {"user_account": self.user_account, "market": record.context["market"], "user": self.wallet}
            ix = self.idl.build_instruction("open_position", args, accounts)
            derived = ix.accounts[0].pubkey
            if str(derived) != record.position:
                raise ConfigError(f"the IDL derives position {derived}, the journal planned {record.position}")
        else:
            accounts = {"market": record.context["market"], "position": record.position, "user": self.wallet}
            ix = self.idl.build_instruction("close_position", {}, accounts)
        message = MessageV0.try_compile(self.wallet, [ix], [], self.transport.latest_blockhash())
        return VersionedTransaction(message, [self.signer])

    def _check_close_price(self, record: OrderRecord, order: OrderRequest) -> None:
        """A close fills at the market's on-chain oracle price: refuse it when that price breaks the bound."""
        account = self.transport.get_account(Pubkey.from_string(record.context["market"]))
        if account is None:
            raise OrderRejected(f"the market account {record.context['market']} is gone")
        price = from_fixed(self.idl.decode_account("Market", account.data)["last_oracle_price"])
        worse = price < order.price_bound if order.side == "long" else price > order.price_bound
        if worse:
            raise OrderRejected(f"the market's oracle price {price:g} is worse than the approved bound "
                                f"{order.price_bound:g} for closing a {order.side}")

    def _send(self, tx: VersionedTransaction) -> None:
        try:
            self.transport.send(tx)
        except TransactionRefused as exc:
            raise OrderRejected(self._explain(exc.logs, exc.reason)) from exc

    def _confirm(self, record: OrderRecord, order: OrderRequest, signature: Signature) -> Fill:
        deadline = time.monotonic() + self.confirm_timeout
        while True:
            status = self.transport.signature_status(signature)
            if status is not None and (status.err is not None or status.reached(self.commitment)):
                return self._settle(record, order, status, str(signature))
            if time.monotonic() >= deadline:
                raise BrokerUnavailable(f"transaction {signature} was sent but not {self.commitment} within "
                                        f"{self.confirm_timeout:g}s; MIKEY re-checks this signature instead of "
                                        "sending another")
            time.sleep(self.poll_interval)

    def _settle(self, record: OrderRecord, order: OrderRequest, status: TxStatus, signature: str) -> Fill:
        if status.err is not None:
            message = self._explain(status.logs, status.err)
            self.journal.update(record.client_id, state="failed", error=message)
            raise OrderRejected(message)
        return self._finish(record, order, signature)

    def _resume(self, record: OrderRecord, order: OrderRequest) -> Fill | None:
        """An earlier attempt signed a transaction: its fill, or None when it can never land (sign a new one)."""
        assert record.tx is not None
        tx = VersionedTransaction.from_bytes(base64.b64decode(record.tx))
        signature = tx.signatures[0]
        if record.signature is not None and self.transport.signature_status(signature) is not None:
            return self._confirm(record, order, signature)
        filled = self._reconcile(record, order)
        if filled is not None:
            return filled
        if self.sign_only:
            try:
                self.transport.simulate(tx)  # only to learn whether its blockhash still lives
            except BlockhashExpired:
                return None
            raise SignOnly(record.client_id, record.tx, record.signature)
        try:
            self.transport.send(tx)
        except BlockhashExpired:
            return None
        except TransactionRefused as exc:
            raise OrderRejected(self._explain(exc.logs, exc.reason)) from exc
        return self._confirm(record, order, signature)

    def _reconcile(self, record: OrderRecord, order: OrderRequest) -> Fill | None:
        """An open whose Position account exists with the order's terms has executed, whatever the node
        remembers of the signature (or when an external wallet signed it)."""
        if order.kind != "open":
            return None
        position = self._read_position(Pubkey.from_string(record.position))
        if position is None:
            return None
        if not self._matches(position, order, record):
            raise OrderRejected(f"position slot {record.position_index} ({record.position}) already holds another "
                                "position")
        return self._finish(record, order, record.signature or f"position:{record.position}")

    def _matches(self, position: dict[str, Any], order: OrderRequest, record: OrderRecord) -> bool:
        return (position["user"] == self.wallet and position["side"] == _SIDES[order.side]
                and position["leverage"] == int(order.leverage)
                and str(position["market"]) == record.context["market"]
                and position["position_index"] == record.position_index)

    def _finish(self, record: OrderRecord, order: OrderRequest, broker_ref: str) -> Fill:
        position = self._read_position(Pubkey.from_string(record.position))
        if position is None:
            raise BrokerUnavailable(f"transaction {broker_ref} landed but position {record.position} is not readable "
                                    "yet; ask again")
        if order.kind == "open":
            fill = Fill(client_id=record.client_id, kind="open", market=record.market, side=order.side,
                        size=from_fixed(position["size"]), price=from_fixed(position["entry_price"]), fee=0.0,
                        position_id=record.position, broker_ref=broker_ref, filled_at=self._clock())
        else:
            size, entry, pnl = record.context["size"], record.context["entry_price"], position["unrealized_pnl"]
            sign = 1 if record.context["side"] == "Long" else -1
            exit_fp = entry + sign * pnl * 1_000_000 // size  # the program's PnL: sign * (exit - entry) * size / 1e6
            fill = Fill(client_id=record.client_id, kind="close", market=record.market, side=order.side,
                        size=from_fixed(size), price=from_fixed(exit_fp), fee=0.0, realised_pnl=from_fixed(pnl),
                        position_id=record.position, broker_ref=broker_ref, filled_at=self._clock())
        self.journal.update(record.client_id, state="filled", fill=fill.model_dump(mode="json"))
        return fill

    # Broker: reading back -------------------------------------------------------------------------------------------
    def lookup(self, client_id: str) -> Fill | None:
        with self._lock:
            record = self.journal.get(client_id)
            if record is None or record.tx is None:
                return None  # never signed: nothing could have executed
            if record.fill is not None:
                return Fill.model_validate(record.fill)
            if record.state == "failed":
                return None
            order = OrderRequest.model_validate(record.request)
            tx = VersionedTransaction.from_bytes(base64.b64decode(record.tx))
            status = self.transport.signature_status(tx.signatures[0]) if record.signature else None
            if status is not None:
                if status.err is not None:
                    self.journal.update(client_id, state="failed", error=self._explain(status.logs, status.err))
                    return None
                if not status.reached(self.commitment):
                    raise BrokerUnavailable(f"transaction {record.signature} landed but is not {self.commitment} yet")
                return self._finish(record, order, str(tx.signatures[0]))
            if order.kind == "open":
                position = self._read_position(Pubkey.from_string(record.position))
                if position is not None and self._matches(position, order, record):
                    return self._finish(record, order, record.signature or f"position:{record.position}")
            try:
                self.transport.simulate(tx)
            except BlockhashExpired:
                return None  # it can never land now
            raise BrokerUnavailable(f"order {client_id}'s signed transaction has not landed and its blockhash is still "
                                    "valid: it may yet execute; ask again once it expires (about a minute)")

    def positions(self, user_id: str, *, include_closed: bool = False) -> list[BrokerPosition]:
        """The Position accounts of the orders this broker opened for ``user_id`` from this wallet, read on-chain."""
        found = []
        for record in self.journal.opened(user_id):
            if record.user_account != str(self.user_account):
                continue
            position = self._read_position(Pubkey.from_string(record.position))
            if position is None:
                continue
            held = self._to_position(record.position, position)
            if held.status == "open" or include_closed:
                found.append(held)
        found.sort(key=lambda p: p.opened_at, reverse=True)
        found.sort(key=lambda p: p.status != "open")
        return found

    def position(self, position_id: str) -> BrokerPosition:
        address = self._parse_pubkey(position_id, NotFound)
        try:
            position = self._read_position(address)
        except InvalidInput:
            raise NotFound(f"{position_id} is not a QuantDesk position") from None
        if position is None:
            raise NotFound(f"no QuantDesk position {position_id}")
        return self._to_position(position_id, position)

    def _to_position(self, position_id: str, position: dict[str, Any]) -> BrokerPosition:
        records = self.journal.by_position(position_id)
        opened = next((r for r in records if r.kind == "open" and r.fill is not None), None)
        closing = next((r for r in records if r.kind == "close" and r.fill is not None), None)
        closed = position["size"] == 0 or position["status"] != "Open"
        market = opened.market if opened else self._market_symbol(position["market"])
        opened_at = from_unix(position["opened_at"]) or (
            Fill.model_validate(opened.fill).filled_at if opened and opened.fill else self._clock())
        close_fill = Fill.model_validate(closing.fill) if closing and closing.fill else None
        closed_at = (from_unix(position["closed_at"]) or (close_fill.filled_at if close_fill else None)) \
            if closed else None
        return BrokerPosition(
            id=position_id, user_id=opened.user_id if opened else str(self.wallet), market=market,
            side="long" if position["side"] == "Long" else "short", size=from_fixed(position["size"]),
            entry_price=from_fixed(position["entry_price"]),
            collateral=0.0 if closed else from_fixed(position["initial_margin"]),
            leverage=float(position["leverage"]), status="closed" if closed else "open", opened_at=opened_at,
            closed_at=closed_at, exit_price=close_fill.price if close_fill else None,
            # the program writes a close's PnL into unrealized_pnl and leaves realized_pnl at 0
            realised_pnl=from_fixed(position["unrealized_pnl"]) if closed else 0.0,
            funding=from_fixed(position["total_funding_paid"]),
            liquidation_price=from_fixed(position["liquidation_price"]) or None,
            proposal_id=opened.client_id if opened else None)

    def _market_symbol(self, market: Pubkey) -> str:
        account = self.transport.get_account(market)
        if account is None:
            return str(market)
        return self.idl.decode_account("Market", account.data)["base_asset"]

    # Helpers --------------------------------------------------------------------------------------------------------
    def _position_address(self, index: int) -> Pubkey:
        accounts = self.idl.resolve_accounts("open_position", {"user_account": self.user_account},
                                             {"position_index": index})
        return accounts["position"]

    def _read_position(self, address: Pubkey) -> dict[str, Any] | None:
        account = self.transport.get_account(address)
        if account is None:
            return None
        if account.owner != self.program_id:
            raise InvalidInput(f"{address} is not owned by the QuantDesk program")
        return self.idl.decode_account("Position", account.data)

    def _explain(self, logs: Any, err: str | None) -> str:
        return f"QuantDesk program refused the order: {self.idl.failure_from_logs(list(logs), err)}"

    @staticmethod
    def _parse_pubkey(text: str, error: type[Exception]) -> Pubkey:
        try:
            return Pubkey.from_string(text)
        except ValueError:
            raise error(f"{text!r} is not a Solana address") from None
