"""Order proposals and their lifecycle, exactly once: what a human approves is what is submitted, and only once.

::

    proposed ──approve──> approved ──claim_for_submission──> submitted ──record_fill──> filled
        │                                                        └──────record_failure──> failed
        ├──reject──> rejected
        └──(expires_at passes)──> expired

Every transition is a compare-and-set in one ``BEGIN IMMEDIATE`` transaction (``UPDATE ... WHERE id = ? AND status =
?``, then the row count), so two processes, or twenty threads, racing on one proposal get one winner. A refused
transition raises and changes nothing, with one exception: approving or rejecting a proposal past its expiry records
that it expired (a fact, whoever asked) before refusing.

An approval binds to a ``digest`` of the exact order (market, side, size, leverage, collateral, price bound): the
approver passes the digest of the order it showed the user, so an order changed after it was shown, by a bug or an
injected instruction, is refused and needs a new approval. Only the caller for whom ``claim_for_submission`` returns
True may call a broker. A crash after the claim leaves the proposal ``submitted``: it is never claimed again, and a
reconciliation with the broker (``in_flight``) decides whether it filled.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sqlite3
import uuid
from collections.abc import Callable
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mikey.domain.utc import require_utc, utc_now
from mikey.errors import ApprovalRequired, InvalidInput, RiskLimitExceeded
from mikey.execution import db
from mikey.execution.halt import OrderKind, read_halt, refuse_if_halted
from mikey.settings import Settings

if TYPE_CHECKING:
    from mikey.execution.audit import AuditAction

ProposalStatus = Literal["proposed", "approved", "rejected", "expired", "submitted", "filled", "failed"]
Side = Literal["long", "short"]

DIGEST_VERSION = 2
"""Part of the digested encoding, so a future change of the encoding can never match an approval of the old one."""

COLUMNS = ("id", "user_id", "thread_id", "market", "side", "size", "leverage", "collateral", "price", "price_bound",
           "digest", "status", "created_at", "expires_at", "updated_at", "reason", "fill_price", "broker_ref",
           "kind", "position_id", "context", "claimed_by")


def order_digest(*, market: str, side: Side, size: float, leverage: float, collateral: float,
                 price_bound: float, kind: OrderKind = "open", position_id: str | None = None) -> str:
    """SHA-256 (hex) of the canonical encoding of exactly the order's terms.

    Canonical: JSON with sorted keys and no spaces; numbers as floats in Python's shortest round-trip form, so
    ``5`` and ``5.0`` are the same order and any other difference, however small, is another order.
    """
    terms = {"v": DIGEST_VERSION, "kind": kind, "position_id": position_id, "market": market, "side": side,
             "size": float(size), "leverage": float(leverage), "collateral": float(collateral),
             "price_bound": float(price_bound)}
    encoded = json.dumps(terms, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(encoded.encode("utf-8")).hexdigest()


def buys(side: Side, kind: OrderKind = "open") -> bool:
    """Whether the order buys: opening a long, or closing (reducing) a short."""
    return (side == "long") == (kind == "open")


def price_bound_for(side: Side, price: float, max_slippage: float, kind: OrderKind = "open") -> float:
    """The worst price the order accepts: above the proposal's price for a buy, below it for a sell."""
    if not 0 <= max_slippage < 1:
        raise InvalidInput(f"max slippage must be a fraction in [0, 1), not {max_slippage!r}")
    return price * (1 + max_slippage) if buys(side, kind) else price * (1 - max_slippage)


class OrderProposal(BaseModel):
    """An order waiting for, or past, its human approval: the terms it was proposed with and where it stands."""

    model_config = ConfigDict(frozen=True, allow_inf_nan=False, extra="forbid")

    id: str
    user_id: str = Field(min_length=1, description="Whose order: only this user may approve or reject it.")
    thread_id: str = Field(min_length=1, description="The conversation it was proposed in.")
    market: str = Field(min_length=1)
    side: Side
    size: float = Field(gt=0, description="Base units.")
    leverage: float = Field(gt=0, le=100)
    collateral: float = Field(gt=0, description="Margin in USD(C).")
    price: float = Field(gt=0, description="The price the proposal (and its risk assessment) was made at.")
    price_bound: float = Field(gt=0, description="Worst acceptable fill price: the proposal's price plus slippage.")
    created_at: datetime
    expires_at: datetime
    status: ProposalStatus = "proposed"
    digest: str = Field(description="order_digest of the terms; an approval must present the same one.")
    updated_at: datetime
    reason: str | None = Field(None, description="Why it was rejected or failed.")
    fill_price: float | None = Field(None, gt=0)
    broker_ref: str | None = Field(None, description="The broker's id of the order (a signature on Solana).")
    kind: OrderKind = Field("open", description="open a position, or close / reduce an open one")
    position_id: str | None = Field(None, description="The broker's position a close or reduce acts on.")
    context: str | None = Field(
        None, description="JSON of what the proposal was made with (risk level and score, liquidation price, the "
        "signal MIKEY gave): kept for the trade review, not part of the order.")
    claimed_by: str | None = Field(
        None, description="host:pid of the process that claimed it for submission: a reconciliation after a crash "
        "only takes over proposals whose claimer is gone.")

    _utc = field_validator("created_at", "expires_at", "updated_at")(require_utc)

    @model_validator(mode="after")
    def _bound_on_the_right_side(self) -> OrderProposal:
        buy = buys(self.side, self.kind)
        if (buy and self.price_bound < self.price) or (not buy and self.price_bound > self.price):
            raise ValueError(f"a {'buy' if buy else 'sell'}'s price bound {self.price_bound:g} would be better than "
                             f"its price {self.price:g}: the bound is the worst price accepted")
        if (self.kind == "open") != (self.position_id is None):
            raise ValueError("a close or reduce names the position it acts on, and an open names none")
        return self

    def terms_digest(self) -> str:
        """The digest of the terms as stored now (equal to ``digest`` unless the row was edited behind the store)."""
        return order_digest(market=self.market, side=self.side, size=self.size, leverage=self.leverage,
                            collateral=self.collateral, price_bound=self.price_bound, kind=self.kind,
                            position_id=self.position_id)


RELEASED = "released"
"""``claimed_by`` of a submitted proposal whose claimer gave up: any reconciliation may settle it."""


def this_process() -> str:
    """``host:pid``, how a claim names its claimer."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _iso(moment: datetime) -> str:
    """Fixed-width UTC text (always with microseconds), so stored times compare correctly as strings."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _from_row(row: sqlite3.Row | tuple) -> OrderProposal:
    return OrderProposal.model_validate(dict(zip(COLUMNS, row, strict=True)))


class ProposalStore:
    """Proposals in the execution database (``settings.execution_db``), safe across threads and processes.

    ``clock`` is injectable so tests can move time instead of sleeping. With ``audit`` (the hash-chained log's path),
    every transition this store makes, and every claim a halt blocks, is appended to it once its own transaction has
    committed (the two are separate files: a crash in between leaves the transition without its entry, which a
    reconciliation can see, never an entry without its transition).
    """

    def __init__(self, path: Path, *, ttl_seconds: float = 120.0, clock: Callable[[], datetime] = utc_now,
                 audit: Path | None = None) -> None:
        if ttl_seconds <= 0:
            raise InvalidInput(f"proposal time-to-live must be positive, not {ttl_seconds!r}")
        self._path = Path(path)
        self._ttl = timedelta(seconds=ttl_seconds)
        self._clock = clock
        self._audit = audit
        db.initialise(self._path)

    @classmethod
    def from_settings(cls, settings: Settings, *, clock: Callable[[], datetime] = utc_now) -> ProposalStore:
        return cls(settings.execution_db, ttl_seconds=settings.proposal_ttl_seconds, clock=clock,
                   audit=settings.audit_db)

    def _log(self, proposal: OrderProposal, action: AuditAction, actor: str, reason: str, **extra: object) -> None:
        """One audit entry for ``proposal``'s transition: the order's terms, digest and price it was made with."""
        if self._audit is None:
            return
        from mikey.execution.audit import AuditLog

        payload = {"kind": proposal.kind, "position_id": proposal.position_id, "market": proposal.market,
                   "side": proposal.side, "size": proposal.size,
                   "leverage": proposal.leverage, "collateral": proposal.collateral, "price": proposal.price,
                   "price_bound": proposal.price_bound, "digest": proposal.digest, **extra}
        with AuditLog(self._audit) as log:
            log.append(actor=actor, action=action, subject=proposal.id, reason=reason, payload=payload)

    def _now(self) -> datetime:
        return require_utc(self._clock())

    # Reading ------------------------------------------------------------------------------------------------------

    def get(self, proposal_id: str) -> OrderProposal:
        """The proposal; ``InvalidInput`` if there is none with this id."""
        with closing(db.connect(self._path)) as conn:
            return self._get(conn, proposal_id)

    def find(self, *, user_id: str | None = None, thread_id: str | None = None,
             status: ProposalStatus | None = None) -> list[OrderProposal]:
        """Proposals matching every filter given, oldest first."""
        where, args = [], []
        for column, value in (("user_id", user_id), ("thread_id", thread_id), ("status", status)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        sql = f"SELECT {', '.join(COLUMNS)} FROM proposals" + (f" WHERE {' AND '.join(where)}" if where else "")
        with closing(db.connect(self._path)) as conn:
            rows = conn.execute(sql + " ORDER BY created_at, id", args).fetchall()
        return [_from_row(row) for row in rows]

    def in_flight(self) -> list[OrderProposal]:
        """Submitted proposals with no recorded outcome: after a crash, what to reconcile with the broker."""
        return self.find(status="submitted")

    @staticmethod
    def _get(conn: sqlite3.Connection, proposal_id: str) -> OrderProposal:
        row = conn.execute(f"SELECT {', '.join(COLUMNS)} FROM proposals WHERE id = ?", (proposal_id,)).fetchone()
        if row is None:
            raise InvalidInput(f"no order proposal {proposal_id!r}")
        return _from_row(row)

    # Transitions --------------------------------------------------------------------------------------------------

    def propose(self, *, user_id: str, thread_id: str, market: str, side: Side, size: float, leverage: float,
                collateral: float, price: float, max_slippage: float, kind: OrderKind = "open",
                position_id: str | None = None, context: dict[str, object] | None = None) -> OrderProposal:
        """Store a new proposal, ``proposed`` until approved, rejected or past ``proposal_ttl_seconds``.

        ``kind`` close or reduce acts on ``position_id`` (its side and leverage; ``size`` and ``collateral`` are the
        part closed and the margin it releases).
        """
        now = self._now()
        bound = price_bound_for(side, price, max_slippage, kind)
        try:
            proposal = OrderProposal(
                id=uuid.uuid4().hex[:12], user_id=user_id, thread_id=thread_id, market=market, side=side, size=size,
                leverage=leverage, collateral=collateral, price=price, price_bound=bound, created_at=now,
                expires_at=now + self._ttl, updated_at=now, kind=kind, position_id=position_id,
                context=None if context is None else json.dumps(context, sort_keys=True, allow_nan=False),
                digest=order_digest(market=market, side=side, size=size, leverage=leverage, collateral=collateral,
                                    price_bound=bound, kind=kind, position_id=position_id))
        except (ValueError, TypeError) as exc:  # pydantic's ValidationError is a ValueError; json's NaN too
            raise InvalidInput(f"invalid order proposal: {exc}") from exc
        row = proposal.model_dump()
        for column in ("created_at", "expires_at", "updated_at"):
            row[column] = _iso(row[column])
        with db.immediate(self._path) as conn:
            conn.execute(f"INSERT INTO proposals ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
                         [row[column] for column in COLUMNS])
        self._log(proposal, "proposed", user_id, f"proposed in thread {thread_id}, expires "
                                                 f"{proposal.expires_at:%H:%M:%S} UTC")
        return proposal

    def approve(self, proposal_id: str, *, user_id: str, digest: str) -> OrderProposal:
        """Approve the order the user was shown, if it is still exactly that order, theirs, pending and unexpired.

        Raises:
            ApprovalRequired: another user's proposal, or ``digest`` is not the stored order's (it changed since it
                was shown, or the stored row was edited): the order needs a new proposal and approval.
            InvalidInput: no such proposal, not ``proposed`` any more, or expired (it is then recorded as expired).
        """
        return self._decide(proposal_id, user_id, "approved", digest=digest)

    def reject(self, proposal_id: str, *, user_id: str, reason: str = "rejected by the user") -> OrderProposal:
        """The user says no: ``proposed`` -> ``rejected`` (past its expiry it is recorded expired and refused)."""
        return self._decide(proposal_id, user_id, "rejected", reason=reason)

    def _decide(self, proposal_id: str, user_id: str, answer: Literal["approved", "rejected"], *,
                digest: str | None = None, reason: str | None = None) -> OrderProposal:
        """Apply the owner's answer to a pending proposal; one past its expiry is recorded expired, then refused."""
        with db.immediate(self._path) as conn:
            proposal = self._get(conn, proposal_id)
            self._check_owner(proposal, user_id, "approve" if answer == "approved" else "reject")
            if digest is not None and (digest != proposal.digest or proposal.terms_digest() != proposal.digest):
                raise ApprovalRequired(f"proposal {proposal_id} is not the order that was approved (its digest "
                                       "differs): a changed order needs a new approval")
            self._require(proposal, "proposed", answer)
            now = self._now()
            expired = now >= proposal.expires_at
            if expired:
                self._set(conn, proposal, "expired", now)
            else:
                self._set(conn, proposal, answer, now, reason=reason)
        if expired:  # raised after the commit, so the expiry stays recorded
            self._log(proposal, "expired", "system", f"expired before it was {answer}")
            raise InvalidInput(f"proposal {proposal_id} expired at {proposal.expires_at:%H:%M:%S} UTC, before it "
                               f"was {answer}; nothing can execute it, ask for a new proposal")
        self._log(proposal, answer, user_id, reason or "approved by its owner")
        return self.get(proposal_id)

    def expire_due(self) -> int:
        """Record every ``proposed`` proposal past its expiry as ``expired``; how many were."""
        now = self._now()
        with db.immediate(self._path) as conn:
            due = [_from_row(row) for row in conn.execute(
                f"SELECT {', '.join(COLUMNS)} FROM proposals WHERE status = 'proposed' AND expires_at <= ?",
                (_iso(now),)).fetchall()]
            for proposal in due:
                self._set(conn, proposal, "expired", now)
        for proposal in due:
            self._log(proposal, "expired", "system", "nobody approved it before it expired")
        return len(due)

    def claim_for_submission(self, proposal_id: str, *, claimer: str | None = None) -> bool:
        """Move an approved proposal to ``submitted``; True only for the one caller that did it.

        Only that caller may send the order to a broker. False means another caller claimed it first (it is
        ``submitted``, ``filled`` or ``failed``): do not submit. The kill switch is read in the same transaction, so
        no claim succeeds after a halt has committed.

        Raises:
            ApprovalRequired: still ``proposed``: nobody approved it.
            InvalidInput: no such proposal, rejected or expired, or its stored terms no longer match its digest.
            RiskLimitExceeded: trading is halted.
        """
        with db.immediate(self._path) as conn:
            proposal = self._get(conn, proposal_id)
            if proposal.status in ("submitted", "filled", "failed"):
                return False
            if proposal.status == "proposed":
                raise ApprovalRequired(f"proposal {proposal_id} has not been approved; nothing is submitted "
                                       "without the user's approval")
            self._require(proposal, "approved", "submitted")
            if proposal.terms_digest() != proposal.digest:
                raise InvalidInput(f"proposal {proposal_id}'s stored terms do not match its approved digest; "
                                   "refusing to submit it")
            try:
                refuse_if_halted(read_halt(conn), proposal.kind)
            except RiskLimitExceeded as exc:
                blocked = exc
            else:
                blocked = None
                won = self._set(conn, proposal, "submitted", self._now(), claimed_by=claimer or this_process())
        if blocked is not None:
            self._log(proposal, "blocked", "system", str(blocked))
            raise blocked
        if won:
            self._log(proposal, "submitted", "system", "claimed for submission: the only claim that executes")
        return won

    def release_claim(self, proposal_id: str) -> None:
        """The claimer gave up waiting for the broker (its answer never came): the submitted proposal is left for any
        process's reconciliation, which would otherwise leave a live claimer's proposals alone."""
        with db.immediate(self._path) as conn:
            conn.execute("UPDATE proposals SET claimed_by = ? WHERE id = ? AND status = 'submitted'",
                         (RELEASED, proposal_id))

    def record_fill(self, proposal_id: str, *, fill_price: float, broker_ref: str | None = None) -> OrderProposal:
        """The broker filled it: ``submitted`` -> ``filled``, with the fill price and the broker's reference."""
        if not fill_price > 0:
            raise InvalidInput(f"a fill price must be positive, not {fill_price!r}")
        with db.immediate(self._path) as conn:
            proposal = self._get(conn, proposal_id)
            self._require(proposal, "submitted", "filled")
            self._set(conn, proposal, "filled", self._now(), fill_price=fill_price, broker_ref=broker_ref)
        self._log(proposal, "filled", "system", f"filled at {fill_price:g}", fill_price=fill_price,
                  broker_ref=broker_ref)
        return self.get(proposal_id)

    def record_failure(self, proposal_id: str, *, reason: str, broker_ref: str | None = None) -> OrderProposal:
        """The broker refused or failed it: ``submitted`` -> ``failed``, with why."""
        if not reason.strip():
            raise InvalidInput("a failed order needs a reason")
        with db.immediate(self._path) as conn:
            proposal = self._get(conn, proposal_id)
            self._require(proposal, "submitted", "failed")
            self._set(conn, proposal, "failed", self._now(), reason=reason, broker_ref=broker_ref)
        self._log(proposal, "failed", "system", reason, broker_ref=broker_ref)
        return self.get(proposal_id)

    # Helpers ------------------------------------------------------------------------------------------------------

    @staticmethod
    def _check_owner(proposal: OrderProposal, user_id: str, verb: str) -> None:
        if user_id != proposal.user_id:
            raise ApprovalRequired(f"proposal {proposal.id} belongs to another user; only they can {verb} it")

    @staticmethod
    def _require(proposal: OrderProposal, status: ProposalStatus, target: ProposalStatus) -> None:
        if proposal.status != status:
            raise InvalidInput(f"proposal {proposal.id} is {proposal.status}, so it cannot become {target} "
                               f"(it must be {status})")

    @staticmethod
    def _set(conn: sqlite3.Connection, proposal: OrderProposal, status: ProposalStatus, now: datetime,
             **fields: object) -> bool:
        """Compare-and-set the status from the one just read; True when this transaction made the change."""
        assignments = ", ".join(f"{column} = ?" for column in ("status", "updated_at", *fields))
        cursor = conn.execute(f"UPDATE proposals SET {assignments} WHERE id = ? AND status = ?",
                              (status, _iso(now), *fields.values(), proposal.id, proposal.status))
        return cursor.rowcount == 1
