"""Order proposals: the lifecycle, the digest an approval binds to, expiry on an injected clock, ownership, and one
winner when two processes race twenty approvals and claims of one proposal."""

from __future__ import annotations

import multiprocessing
import os
import signal
import sqlite3
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mikey.errors import ApprovalRequired, InvalidInput, MikeyError, RiskLimitExceeded
from mikey.execution.halt import KillSwitch
from mikey.execution.proposals import OrderProposal, ProposalStore, order_digest
from mikey.settings import Settings

START = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
ORDER = {"market": "SOL", "side": "long", "size": 10.0, "leverage": 5.0, "collateral": 300.0}


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(settings: Settings, clock: Clock) -> ProposalStore:
    return ProposalStore.from_settings(settings, clock=clock)


def propose(store: ProposalStore, user_id: str = "alice", **changes: object) -> OrderProposal:
    terms = {**ORDER, "price": 150.0, "max_slippage": 0.01, **changes}
    return store.propose(user_id=user_id, thread_id="t1", **terms)  # type: ignore[arg-type]


def test_a_proposal_is_stored_pending_with_its_bound_digest_and_expiry(store: ProposalStore,
                                                                      settings: Settings) -> None:
    proposal = propose(store)

    assert proposal.status == "proposed"
    assert proposal.price_bound == pytest.approx(151.5)
    assert proposal.expires_at - proposal.created_at == timedelta(seconds=settings.proposal_ttl_seconds) \
        == timedelta(minutes=2)
    assert proposal.digest == order_digest(**ORDER, price_bound=proposal.price_bound)  # type: ignore[arg-type]
    assert store.get(proposal.id) == proposal
    assert settings.execution_db.exists()


def test_a_short_is_bounded_below_its_price(store: ProposalStore) -> None:
    assert propose(store, side="short", max_slippage=0.02).price_bound == pytest.approx(147.0)


def test_the_whole_lifecycle_to_filled(store: ProposalStore, clock: Clock) -> None:
    proposal = propose(store)
    clock.advance(30)

    approved = store.approve(proposal.id, user_id="alice", digest=proposal.digest)
    assert approved.status == "approved"
    assert approved.updated_at == START + timedelta(seconds=30)
    assert store.claim_for_submission(proposal.id) is True
    assert store.get(proposal.id).status == "submitted"
    filled = store.record_fill(proposal.id, fill_price=150.2, broker_ref="paper-1")

    assert (filled.status, filled.fill_price, filled.broker_ref) == ("filled", 150.2, "paper-1")
    assert store.claim_for_submission(proposal.id) is False
    with pytest.raises(InvalidInput, match="is filled"):
        store.record_failure(proposal.id, reason="late")


def test_a_failed_submission_records_why(store: ProposalStore) -> None:
    proposal = propose(store)
    store.approve(proposal.id, user_id="alice", digest=proposal.digest)
    store.claim_for_submission(proposal.id)

    failed = store.record_failure(proposal.id, reason="program panic: leverage too high")

    assert (failed.status, failed.reason) == ("failed", "program panic: leverage too high")
    with pytest.raises(InvalidInput, match="is failed"):
        store.record_fill(proposal.id, fill_price=150.0)


def test_a_rejected_proposal_can_be_neither_approved_nor_claimed(store: ProposalStore) -> None:
    proposal = propose(store)
    assert store.reject(proposal.id, user_id="alice").status == "rejected"

    with pytest.raises(InvalidInput, match="is rejected"):
        store.approve(proposal.id, user_id="alice", digest=proposal.digest)
    with pytest.raises(InvalidInput, match="is rejected"):
        store.claim_for_submission(proposal.id)
    assert store.get(proposal.id).status == "rejected"


def test_nothing_is_submitted_without_an_approval(store: ProposalStore) -> None:
    proposal = propose(store)

    with pytest.raises(ApprovalRequired, match="not been approved"):
        store.claim_for_submission(proposal.id)
    with pytest.raises(InvalidInput, match="is proposed"):
        store.record_fill(proposal.id, fill_price=150.0)
    assert store.get(proposal.id).status == "proposed"


def test_a_second_approval_is_refused_and_changes_nothing(store: ProposalStore) -> None:
    proposal = propose(store)
    first = store.approve(proposal.id, user_id="alice", digest=proposal.digest)

    with pytest.raises(InvalidInput, match="is approved, so it cannot become approved"):
        store.approve(proposal.id, user_id="alice", digest=proposal.digest)
    assert store.get(proposal.id) == first


@pytest.mark.parametrize("change", [{"size": 10.000001}, {"leverage": 10.0}, {"collateral": 3000.0},
                                   {"side": "short"}, {"market": "ETH"}, {"price_bound": 160.0}])
def test_an_approval_binds_to_the_exact_order(store: ProposalStore, change: dict[str, object]) -> None:
    """The approver presents the digest of the order it showed; any other order is not approved."""
    proposal = propose(store)
    shown = {**ORDER, "price_bound": proposal.price_bound, **change}

    with pytest.raises(ApprovalRequired, match="needs a new approval"):
        store.approve(proposal.id, user_id="alice", digest=order_digest(**shown))  # type: ignore[arg-type]
    assert store.get(proposal.id).status == "proposed"


def test_the_digest_is_canonical() -> None:
    """Integers and floats of the same value are the same order; the digest is SHA-256 hex."""
    as_ints = order_digest(market="SOL", side="long", size=10, leverage=5, collateral=300, price_bound=151.5)
    digest = order_digest(**ORDER, price_bound=151.5)  # type: ignore[arg-type]
    assert as_ints == digest
    assert len(digest) == 64 and int(digest, 16) >= 0


def test_a_row_edited_behind_the_store_is_not_approved_or_submitted(store: ProposalStore,
                                                                     settings: Settings) -> None:
    proposal = propose(store)
    store.approve(proposal.id, user_id="alice", digest=proposal.digest)
    with sqlite3.connect(settings.execution_db) as conn:
        conn.execute("UPDATE proposals SET leverage = 50 WHERE id = ?", (proposal.id,))

    with pytest.raises(InvalidInput, match="do not match its approved digest"):
        store.claim_for_submission(proposal.id)
    assert store.get(proposal.id).status == "approved"


def test_only_the_proposals_user_can_approve_or_reject_it(store: ProposalStore) -> None:
    proposal = propose(store)

    with pytest.raises(ApprovalRequired, match="belongs to another user"):
        store.approve(proposal.id, user_id="mallory", digest=proposal.digest)
    with pytest.raises(ApprovalRequired, match="belongs to another user"):
        store.reject(proposal.id, user_id="mallory")
    assert store.get(proposal.id).status == "proposed"


def test_an_expired_proposal_cannot_be_approved(store: ProposalStore, clock: Clock) -> None:
    proposal = propose(store)
    clock.advance(119)
    still_fresh = propose(store)
    clock.advance(1)

    with pytest.raises(InvalidInput, match="expired at 12:02:00 UTC"):
        store.approve(proposal.id, user_id="alice", digest=proposal.digest)

    assert store.get(proposal.id).status == "expired"  # recorded, though the approval was refused
    with pytest.raises(InvalidInput, match="is expired"):
        store.claim_for_submission(proposal.id)
    assert store.approve(still_fresh.id, user_id="alice", digest=still_fresh.digest).status == "approved"


def test_rejecting_an_expired_proposal_records_the_expiry(store: ProposalStore, clock: Clock) -> None:
    proposal = propose(store)
    clock.advance(121)

    with pytest.raises(InvalidInput, match="before it was rejected; nothing can execute it"):
        store.reject(proposal.id, user_id="alice")
    assert store.get(proposal.id).status == "expired"


def test_expire_due_sweeps_only_pending_proposals_past_expiry(store: ProposalStore, clock: Clock) -> None:
    old, approved = propose(store), propose(store)
    store.approve(approved.id, user_id="alice", digest=approved.digest)
    clock.advance(60)
    young = propose(store)
    clock.advance(60)

    assert store.expire_due() == 1
    assert [store.get(p.id).status for p in (old, approved, young)] == ["expired", "approved", "proposed"]


def test_find_filters_by_user_thread_and_status(store: ProposalStore) -> None:
    mine, theirs = propose(store), propose(store, user_id="bob")
    store.reject(theirs.id, user_id="bob")

    assert [p.id for p in store.find(user_id="alice", thread_id="t1", status="proposed")] == [mine.id]
    assert [p.id for p in store.find(status="rejected")] == [theirs.id]
    assert store.find(thread_id="elsewhere") == []


def test_bad_proposals_and_unknown_ids_are_clear_errors(store: ProposalStore) -> None:
    with pytest.raises(InvalidInput, match="invalid order proposal"):
        propose(store, size=-1.0)
    with pytest.raises(InvalidInput, match="max slippage"):
        propose(store, max_slippage=1.5)
    with pytest.raises(InvalidInput, match="no order proposal 'nope'"):
        store.claim_for_submission("nope")
    assert store.find() == []


def test_a_halt_blocks_the_claim_in_the_same_transaction(store: ProposalStore, settings: Settings) -> None:
    proposal = propose(store)
    store.approve(proposal.id, user_id="alice", digest=proposal.digest)
    switch = KillSwitch.from_settings(settings)
    switch.halt("oracle outage", "ops")

    with pytest.raises(RiskLimitExceeded, match="oracle outage"):
        store.claim_for_submission(proposal.id)
    assert store.get(proposal.id).status == "approved"

    switch.resume("ops")
    assert store.claim_for_submission(proposal.id) is True


# Two processes ----------------------------------------------------------------------------------------------------

def _race(path: str, proposal_id: str, digest: str, barrier: object, results: object) -> None:
    """One process: ten threads, each approving the proposal and then trying to claim it, all at once."""
    store = ProposalStore(Path(path))
    start = threading.Barrier(10)
    outcomes: list[tuple[str, str]] = []

    def attempt() -> None:
        start.wait()
        try:
            store.approve(proposal_id, user_id="alice", digest=digest)
            approval = "approved"
        except InvalidInput as exc:
            approval = f"refused: {exc}"
        try:
            claim = "won" if store.claim_for_submission(proposal_id) else "lost"
        except MikeyError as exc:  # reported, so the parent's assertion shows it
            claim = f"error: {exc}"
        outcomes.append((approval, claim))

    threads = [threading.Thread(target=attempt) for _ in range(10)]
    barrier.wait()  # type: ignore[attr-defined]  # both processes' threads start together
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    results.put(outcomes)  # type: ignore[attr-defined]


def _claim_then_die(path: str, proposal_id: str) -> None:
    """A worker that wins the claim and is killed before it can record what the broker did."""
    if ProposalStore(Path(path)).claim_for_submission(proposal_id):
        os.kill(os.getpid(), signal.SIGKILL)


def _run(target: Callable[..., None], *args: object) -> multiprocessing.process.BaseProcess:
    process = multiprocessing.get_context("spawn").Process(target=target, args=args)
    process.start()
    return process


def test_twenty_concurrent_approvals_and_claims_from_two_processes_have_one_winner(
        settings: Settings) -> None:
    proposal = propose(ProposalStore.from_settings(settings))  # the real clock: the racing processes use it too
    store = ProposalStore.from_settings(settings)
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(2), context.Queue()
    processes = [context.Process(target=_race, args=(str(settings.execution_db), proposal.id, proposal.digest,
                                                     barrier, results)) for _ in range(2)]
    for process in processes:
        process.start()
    outcomes = [outcome for _ in processes for outcome in results.get(timeout=120)]
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0

    assert len(outcomes) == 20
    assert [approval for approval, _ in outcomes].count("approved") == 1
    assert all("is approved" in a or "is submitted" in a for a, _ in outcomes if a != "approved")
    assert sorted(claim for _, claim in outcomes) == ["lost"] * 19 + ["won"]
    assert store.get(proposal.id).status == "submitted"


def test_a_crash_between_claim_and_record_leaves_it_submitted_and_never_reclaimable(
        store: ProposalStore, settings: Settings) -> None:
    proposal = propose(store)
    store.approve(proposal.id, user_id="alice", digest=proposal.digest)

    worker = _run(_claim_then_die, str(settings.execution_db), proposal.id)
    worker.join(timeout=60)
    assert worker.exitcode == -signal.SIGKILL

    restarted = ProposalStore.from_settings(settings)
    assert restarted.get(proposal.id).status == "submitted"
    assert [p.id for p in restarted.in_flight()] == [proposal.id]  # for reconciliation with the broker
    assert restarted.claim_for_submission(proposal.id) is False
    with pytest.raises(InvalidInput, match="is submitted"):
        restarted.approve(proposal.id, user_id="alice", digest=proposal.digest)
    assert restarted.record_fill(proposal.id, fill_price=150.1).status == "filled"


# -- every transition in the audit log ---------------------------------------------------------------------------

def test_every_transition_and_a_blocked_claim_are_in_the_audit_log(store: ProposalStore, settings: Settings,
                                                                      clock: Clock) -> None:
    from mikey.execution.audit import AuditLog

    filled = propose(store)
    store.approve(filled.id, user_id="alice", digest=filled.digest)
    assert store.claim_for_submission(filled.id) and not store.claim_for_submission(filled.id)
    store.record_fill(filled.id, fill_price=150.4, broker_ref="paper-1")

    halted = propose(store)
    store.approve(halted.id, user_id="alice", digest=halted.digest)
    KillSwitch.from_settings(settings).halt("oracle outage", "ops")
    with pytest.raises(RiskLimitExceeded):
        store.claim_for_submission(halted.id)

    stale = propose(store)
    clock.advance(settings.proposal_ttl_seconds + 1)
    assert store.expire_due() == 1

    with AuditLog(settings.audit_db) as log:
        assert [e.action for e in log.entries(filled.id)] == ["proposed", "approved", "submitted", "filled"]
        assert [e.action for e in log.entries(halted.id)] == ["proposed", "approved", "blocked"]
        assert [(e.action, e.actor) for e in log.entries(stale.id)] == [("proposed", "alice"), ("expired", "system")]
        fill = log.entries(filled.id)[-1]
        assert fill.payload["fill_price"] == 150.4 and fill.payload["digest"] == filled.digest
        assert "halted" in log.entries(halted.id)[-1].reason
        assert log.verify().ok
