"""From an approved proposal to a position, exactly once: claim, gates, broker, record; and reconcile after a crash.

``Executor`` is the one way an order reaches a broker, for the chat graph, the CLI and the API alike::

    propose_open / propose_close  ->  approve(id, user, digest)  ->  execute(id):
        claim_for_submission (one winner, across processes; a halt refuses it)
        -> gates (halt, oracle, slippage, risk, limits, daily loss; or the position for a close)
        -> broker.submit(order, oracle_price)       keyed by the proposal id: a retry never executes twice
        -> record_fill / record_failure             (and compare the broker's position with MIKEY's risk figures)

A crash anywhere leaves a state ``reconcile`` can finish: a proposal claimed by a process that is gone is looked up
at the broker by its id, recorded ``filled`` when the broker executed it, ``failed`` when it never did. A proposal
whose claimer is alive is never touched: that process may still be submitting it.
"""

from __future__ import annotations

import json
import os
import time as _time
from collections.abc import Callable
from contextlib import closing
from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict

from mikey.domain.utc import utc_now
from mikey.errors import BrokerUnavailable, InvalidInput, MikeyError, NotFound, OrderRejected
from mikey.execution import db
from mikey.execution.broker import Broker, BrokerPosition, Fill, OrderRequest
from mikey.execution.gates import GateReport, assess_at, run_gates
from mikey.execution.halt import HaltState, read_halt
from mikey.execution.proposals import RELEASED, OrderProposal, ProposalStore, Side, this_process
from mikey.market.feed import PriceFeed
from mikey.settings import Settings

Outcome = Literal["filled", "failed", "in_flight"]

LIQUIDATION_TOLERANCE = 0.01
"""Relative difference between the broker's and MIKEY's liquidation price beyond which the two disagree."""

ORPHAN_AFTER = timedelta(hours=1)
"""A claim made on another host is taken over by a reconciliation after this long (its process cannot be probed)."""


class ExecutionResult(BaseModel):
    """Where one proposal ended, with everything the user should see about it."""

    model_config = ConfigDict(frozen=True)

    proposal: OrderProposal
    outcome: Outcome
    message: str
    fill: Fill | None = None
    position: BrokerPosition | None = None
    gates: GateReport | None = None
    discrepancies: list[str] = []
    transaction: str | None = None
    """Sign-only mode: the signed transaction (base64) for an external wallet to broadcast."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Executor:
    """Proposals, gates and a broker, wired together; built once per process at the composition root."""

    def __init__(self, settings: Settings, *, broker: Broker, feed: PriceFeed, store: ProposalStore | None = None,
                 reference: PriceFeed | None = None, clock: Callable[[], datetime] = utc_now,
                 submit_attempts: int = 3, retry_pause: float = 0.2) -> None:
        self.settings = settings
        self.broker = broker
        self.feed = feed
        self.store = store or ProposalStore.from_settings(settings, clock=clock)
        self.reference = reference
        self._clock = clock
        self._attempts = max(1, submit_attempts)
        self._pause = retry_pause
        self._executing: set[str] = set()

    @classmethod
    def from_settings(cls, settings: Settings, *, feed: PriceFeed, broker: Broker | None = None,
                      clock: Callable[[], datetime] = utc_now) -> Executor:
        from mikey.execution.broker import open_broker

        return cls(settings, broker=broker or open_broker(settings), feed=feed, clock=clock)

    def close(self) -> None:
        self.broker.close()

    def _audit(self, action: str, subject: str, reason: str, actor: str = "system", **payload: object) -> None:
        from mikey.execution.audit import AuditLog

        with AuditLog(self.settings.audit_db) as log:
            log.append(actor=actor, action=action, subject=subject, reason=reason,  # type: ignore[arg-type]
                       payload=json.loads(json.dumps(payload, default=str)))

    def log_refusal(self, subject: str, reason: str, *, actor: str, text: str) -> None:
        """Record an attempt to execute, approve or change limits from text that has no authority to."""
        self._audit("refused", subject, reason, actor=actor, text=text[:500])

    # Proposing ----------------------------------------------------------------------------------------------------

    def _price(self, market: str) -> float:
        return float(self.feed.quote(market).price)

    def propose_open(self, *, user_id: str, thread_id: str, market: str, side: Side, leverage: float,
                     collateral: float, tolerance: str | None = None, signal: str | None = None) -> OrderProposal:
        """A proposal to open ``side`` on ``market`` with ``collateral`` USD at ``leverage``, at the current price."""
        if not (leverage > 0 and collateral > 0):
            raise InvalidInput(f"leverage and collateral must be positive, not {leverage!r} and {collateral!r}")
        price = self._price(market)
        size = collateral * leverage / price
        context: dict[str, object] = {"signal": signal, "tolerance": tolerance}
        try:
            draft = OrderProposal.model_construct(market=market, side=side, size=size, collateral=collateral,
                                                  leverage=leverage)
            risk = assess_at(draft, self.feed, price, tolerance)  # type: ignore[arg-type]
            context.update(risk_level=risk.risk_level, risk_score=risk.risk_score,
                           liquidation_price=risk.liquidation_price)
        except MikeyError as exc:
            context["risk_error"] = str(exc)
        return self.store.propose(user_id=user_id, thread_id=thread_id, market=market, side=side, size=size,
                                  leverage=leverage, collateral=collateral, price=price,
                                  max_slippage=self.settings.max_slippage, context=context)

    def propose_close(self, *, user_id: str, thread_id: str, position_id: str,
                      fraction: float = 1.0) -> OrderProposal:
        """A proposal to close ``fraction`` (1: all) of the user's open position ``position_id``."""
        if not 0 < fraction <= 1:
            raise InvalidInput(f"the fraction to close must be in (0, 1], not {fraction!r}")
        position = self.broker.position(position_id)
        if position.user_id != user_id:
            raise NotFound(f"no position {position_id} of yours")
        if position.status != "open":
            raise InvalidInput(f"position {position_id} is already closed")
        whole = fraction == 1
        return self.store.propose(
            user_id=user_id, thread_id=thread_id, market=position.market, side=position.side,
            size=position.size if whole else position.size * fraction, leverage=position.leverage,
            collateral=position.collateral if whole else position.collateral * fraction,
            price=self._price(position.market), max_slippage=self.settings.max_slippage,
            kind="close" if whole else "reduce", position_id=position_id)

    # Deciding -----------------------------------------------------------------------------------------------------

    def approve(self, proposal_id: str, *, user_id: str, digest: str) -> ExecutionResult:
        """The owner approves the order they were shown (``digest``); then it executes, once.

        A proposal the owner already approved with that digest, whose execution never started (the process stopped
        in between, or a halt refused its claim), executes now if it has not expired: approving again is how the
        owner finishes it.
        """
        current = self.store.get(proposal_id)
        if (current.status == "approved" and current.user_id == user_id and digest == current.digest
                and current.terms_digest() == current.digest):
            if self._clock() >= current.expires_at:
                raise InvalidInput(f"proposal {proposal_id} was approved but never executed, and it expired at "
                                   f"{current.expires_at:%H:%M:%S} UTC; ask for a new proposal")
            return self.execute(proposal_id)
        self.store.approve(proposal_id, user_id=user_id, digest=digest)
        return self.execute(proposal_id)

    def reject(self, proposal_id: str, *, user_id: str, reason: str = "rejected by the user") -> OrderProposal:
        return self.store.reject(proposal_id, user_id=user_id, reason=reason)

    # Executing ----------------------------------------------------------------------------------------------------

    def execute(self, proposal_id: str) -> ExecutionResult:
        """Run an approved proposal through the gates to the broker, once; the recorded outcome when already run."""
        proposal = self.store.get(proposal_id)
        if proposal.status in ("filled", "failed", "submitted"):
            return self._settled(proposal)
        if not self.store.claim_for_submission(proposal_id):
            return self._settled(self.store.get(proposal_id))
        self._executing.add(proposal_id)
        try:
            return self._submit(self.store.get(proposal_id))
        finally:
            self._executing.discard(proposal_id)

    def _submit(self, proposal: OrderProposal) -> ExecutionResult:
        tolerance = json.loads(proposal.context).get("tolerance") if proposal.context else None
        gates = run_gates(proposal, settings=self.settings, feed=self.feed, broker=self.broker,
                          halt=self._halt(), now=self._clock(), reference=self.reference, tolerance=tolerance)
        self._audit("gates", proposal.id, "passed" if gates.passed else gates.describe_failures(),
                    checks=[c.model_dump() for c in gates.checks], price=gates.price)
        if not gates.passed:
            failed = self.store.record_failure(proposal.id, reason=f"gate {gates.describe_failures()}")
            return ExecutionResult(proposal=failed, outcome="failed", gates=gates,
                                   message=f"Not executed: {gates.describe_failures()}.")
        assert gates.price is not None
        order = OrderRequest(client_id=proposal.id, user_id=proposal.user_id, kind=proposal.kind,
                             market=proposal.market, side=proposal.side, size=proposal.size,
                             leverage=proposal.leverage, collateral=proposal.collateral,
                             price_bound=proposal.price_bound, position_id=proposal.position_id)
        fill: Fill | None = None
        for attempt in range(self._attempts):
            try:
                fill = self.broker.submit(order, oracle_price=gates.price)
                break
            except OrderRejected as exc:
                failed = self.store.record_failure(proposal.id, reason=str(exc))
                return ExecutionResult(proposal=failed, outcome="failed", gates=gates,
                                       message=f"The {self.broker.name} broker refused the order: {exc}")
            except BrokerUnavailable as exc:
                if (transaction := getattr(exc, "transaction", None)) is not None:  # sign-only: nothing was sent
                    self._audit("submitted", proposal.id, "signed for an external wallet; not sent by MIKEY",
                                signature=getattr(exc, "signature", None))
                    return ExecutionResult(
                        proposal=self.store.get(proposal.id), outcome="in_flight", gates=gates,
                        transaction=transaction,
                        message=f"Signed, not sent (sign-only mode): broadcast the transaction with your wallet; "
                                f"signature {getattr(exc, 'signature', '?')}. `mikey positions list` records the "
                                "outcome once it lands, or its failure once its blockhash expires.")
                last = exc
                if attempt + 1 < self._attempts:
                    _time.sleep(self._pause * (attempt + 1))
        if fill is None:
            try:
                fill = self.broker.lookup(proposal.id)
            except BrokerUnavailable:
                fill = None
            if fill is None:
                self.store.release_claim(proposal.id)  # any later reconciliation (mikey positions list) settles it
                return ExecutionResult(
                    proposal=self.store.get(proposal.id), outcome="in_flight", gates=gates,
                    message=f"The {self.broker.name} broker did not answer ({last}); whether the order executed is "
                            "unknown. It is never sent again: `mikey positions list` reconciles it with the broker.")
        return self._record(proposal, fill, gates)

    def _record(self, proposal: OrderProposal, fill: Fill, gates: GateReport | None) -> ExecutionResult:
        filled = self.store.record_fill(proposal.id, fill_price=fill.price, broker_ref=fill.broker_ref)
        position, discrepancies = self._read_back(filled, fill)
        verb = {"open": "Opened", "close": "Closed", "reduce": "Reduced"}[fill.kind]
        pnl = f"; realised PnL {fill.realised_pnl:+,.2f} USD" if fill.kind != "open" else ""
        message = (f"{verb} {fill.size:g} {fill.market} {fill.side} at {fill.price:,.4f} on the {self.broker.name} "
                   f"broker (fee {fill.fee:,.2f} USD{pnl}); reference {fill.broker_ref}.")
        return ExecutionResult(proposal=filled, outcome="filled", fill=fill, position=position, gates=gates,
                               discrepancies=discrepancies, message=message)

    def _read_back(self, proposal: OrderProposal, fill: Fill) -> tuple[BrokerPosition | None, list[str]]:
        """The broker's position after the fill, compared with MIKEY's own liquidation price for it."""
        try:
            position = self.broker.position(fill.position_id)
        except (NotFound, BrokerUnavailable):
            return None, []
        if fill.kind != "open" or position.liquidation_price is None:
            return position, []
        try:
            ours = assess_at(proposal, self.feed, fill.price, None, entry_price=fill.price).liquidation_price
        except MikeyError as exc:
            return position, [f"MIKEY could not compute its own liquidation price to compare: {exc}"]
        theirs = position.liquidation_price
        if ours is None or abs(theirs - ours) / ours > LIQUIDATION_TOLERANCE:
            mine = "none (cannot be liquidated)" if ours is None else f"{ours:,.4f}"
            note = (f"The {self.broker.name} broker's liquidation price {theirs:,.4f} disagrees with MIKEY's {mine} "
                    f"for this position; trust neither blindly.")
            self._audit("discrepancy", proposal.id, note, broker_liquidation_price=theirs,
                        mikey_liquidation_price=ours, position_id=position.id)
            return position, [note]
        return position, []

    def _settled(self, proposal: OrderProposal) -> ExecutionResult:
        """The outcome of a proposal someone else already ran (or is running)."""
        if proposal.status == "filled":
            fill = self.broker.lookup(proposal.id)
            position = None
            if fill is not None:
                try:
                    position = self.broker.position(fill.position_id)
                except NotFound:
                    position = None
            return ExecutionResult(proposal=proposal, outcome="filled", fill=fill, position=position,
                                   message=f"Already executed at {proposal.fill_price:,.4f} "
                                           f"(reference {proposal.broker_ref}); it does not execute again.")
        if proposal.status == "failed":
            return ExecutionResult(proposal=proposal, outcome="failed", message=f"Not executed: {proposal.reason}")
        return ExecutionResult(proposal=proposal, outcome="in_flight",
                               message="Submitted and waiting for the broker's answer; it does not execute again.")

    def _halt(self) -> HaltState | None:
        with closing(db.connect(self.settings.execution_db)) as conn:
            return read_halt(conn)

    # Reconciling --------------------------------------------------------------------------------------------------

    def _orphaned(self, proposal: OrderProposal) -> bool:
        if proposal.claimed_by == RELEASED:
            return True
        host, _, pid = (proposal.claimed_by or ":").rpartition(":")
        me = this_process()
        if proposal.claimed_by == me:
            return proposal.id not in self._executing
        if host == me.rpartition(":")[0] and pid.isdigit():
            return not _pid_alive(int(pid))
        return self._clock() - proposal.updated_at > ORPHAN_AFTER

    def reconcile(self) -> list[ExecutionResult]:
        """Settle every submitted proposal whose claimer is gone, from the broker's own record of it."""
        results = []
        for proposal in self.store.in_flight():
            if not self._orphaned(proposal):
                continue
            try:
                fill = self.broker.lookup(proposal.id)
            except BrokerUnavailable:
                continue  # the broker cannot say yet (a sent transaction may still land): try again next time
            if fill is not None:
                self._audit("reconciled", proposal.id, "the broker executed it before MIKEY stopped",
                            broker_ref=fill.broker_ref)
                results.append(self._record(proposal, fill, None))
            else:
                reason = "MIKEY stopped after claiming it and the broker has no execution of it: not executed"
                self._audit("reconciled", proposal.id, reason)
                failed = self.store.record_failure(proposal.id, reason=reason)
                results.append(ExecutionResult(proposal=failed, outcome="failed", message=reason))
        return results
