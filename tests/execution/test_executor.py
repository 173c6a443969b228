"""The executor end to end on real parts (the paper broker's SQLite ledger, the replayed market, the execution and
audit databases): the approved order fills once, every gate refuses with its name and sends nothing, twenty racing
approvals in two processes fill once, a lost broker answer is retried under the same id, and a process killed between
the broker's fill and MIKEY's record of it is reconciled from the broker."""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from mikey.domain import Candle, Quote
from mikey.errors import ApprovalRequired, BrokerUnavailable, InvalidInput, NotFound, RiskLimitExceeded
from mikey.execution.audit import AuditLog
from mikey.execution.broker import Broker, BrokerPosition, Fill, OrderRequest
from mikey.execution.executor import ExecutionResult, Executor
from mikey.execution.halt import KillSwitch
from mikey.execution.paper import PaperBroker
from mikey.execution.proposals import OrderProposal, ProposalStore, order_digest
from mikey.market.feed import PriceFeed
from mikey.market.replay import ReplayFeed
from mikey.settings import Settings
from tests.conftest import REPO, mikey_env, run_mikey

START = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
BTC = Decimal("27727.392578")  # the replayed market's last BTC close
SLIPPAGE, FEE_RATE, FUNDING_HOURLY = 0.0005, 0.0006, 0.0000125  # the paper broker's defaults in Settings
GATES = ["halt", "oracle", "slippage", "risk", "limits", "daily_loss"]


class Clock:
    """A clock the test moves by hand, shared by the executor, its proposal store and the paper broker."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


class MovedFeed:
    """The replayed market with every quote multiplied by ``factor``: a price that moved after the proposal, or a
    second source that disagrees. Candles (the risk engine's history) are the replay's own."""

    def __init__(self, inner: ReplayFeed, factor: float = 1.0, *, name: str = "replay") -> None:
        self.inner = inner
        self.factor = factor
        self.name = name

    def symbols(self) -> list[str]:
        return self.inner.symbols()

    def now(self, symbol: str) -> datetime:
        return self.inner.now(symbol)

    def candles(self, symbol: str, *, start: datetime | None = None, end: datetime | None = None) -> list[Candle]:
        return self.inner.candles(symbol, start=start, end=end)

    def quote(self, symbol: str) -> Quote:
        quote = self.inner.quote(symbol)
        return quote.model_copy(update={"price": quote.price * Decimal(repr(self.factor)),
                                        "source": f"{self.name}:{symbol}"})


class DelayedFeed:
    """A live-looking oracle (not a replay) whose quotes were published ``age`` before the wall clock."""

    name = "delayed-oracle"

    def __init__(self, inner: ReplayFeed, clock: Clock, age: timedelta) -> None:
        self.inner = inner
        self.clock = clock
        self.age = age

    def symbols(self) -> list[str]:
        return self.inner.symbols()

    def candles(self, symbol: str, *, start: datetime | None = None, end: datetime | None = None) -> list[Candle]:
        return self.inner.candles(symbol, start=start, end=end)

    def quote(self, symbol: str) -> Quote:
        quote = self.inner.quote(symbol)
        return quote.model_copy(update={"as_of": self.clock() - self.age, "source": "delayed-oracle"})


class LostAnswerBroker:
    """The paper broker behind a link that loses the answer to the first submit: the order executes, then the
    caller hears ``BrokerUnavailable`` (a timeout). Later submits go through."""

    name = "paper"

    def __init__(self, inner: PaperBroker) -> None:
        self.inner = inner
        self.submitted: list[str] = []

    def submit(self, order: OrderRequest, *, oracle_price: float) -> Fill:
        self.submitted.append(order.client_id)
        fill = self.inner.submit(order, oracle_price=oracle_price)
        if len(self.submitted) == 1:
            raise BrokerUnavailable("timed out waiting for the broker's answer")
        return fill

    def lookup(self, client_id: str) -> Fill | None:
        return self.inner.lookup(client_id)

    def positions(self, user_id: str, *, include_closed: bool = False) -> list[BrokerPosition]:
        return self.inner.positions(user_id, include_closed=include_closed)

    def position(self, position_id: str) -> BrokerPosition:
        return self.inner.position(position_id)

    def close(self) -> None:
        self.inner.close()


class DownBroker(LostAnswerBroker):
    """A broker that never answers: every submit times out before the order reaches the ledger."""

    def submit(self, order: OrderRequest, *, oracle_price: float) -> Fill:
        self.submitted.append(order.client_id)
        raise BrokerUnavailable("connection refused")


class HaltingStore(ProposalStore):
    """The proposal store, with an operator's ``mikey halt`` landing right after a claim is won (between the claim
    and the gates)."""

    def __init__(self, settings: Settings, clock: Clock) -> None:
        super().__init__(settings.execution_db, ttl_seconds=settings.proposal_ttl_seconds, clock=clock,
                         audit=settings.audit_db)
        self.switch = KillSwitch.from_settings(settings, clock=clock)

    def claim_for_submission(self, proposal_id: str, *, claimer: str | None = None) -> bool:
        won = super().claim_for_submission(proposal_id, claimer=claimer)
        if won:
            self.switch.halt("oracle outage", "ops")
        return won


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def feed() -> ReplayFeed:
    return ReplayFeed()


@pytest.fixture
def paper(settings: Settings, clock: Clock) -> PaperBroker:
    return PaperBroker.from_settings(settings, clock=clock)


def executor_for(settings: Settings, clock: Clock, *, broker: Broker, feed: PriceFeed,
                 **options: object) -> Executor:
    return Executor(settings, broker=broker, feed=feed, clock=clock, retry_pause=0.0, **options)  # type: ignore[arg-type]


@pytest.fixture
def executor(settings: Settings, clock: Clock, paper: PaperBroker, feed: ReplayFeed) -> Executor:
    return executor_for(settings, clock, broker=paper, feed=feed)


def propose_btc(executor: Executor, user_id: str = "alice", **changes: object) -> OrderProposal:
    """A 2x BTC long on 100 USD, proposed at the high risk tolerance (which BTC's history passes)."""
    terms = {"market": "BTC", "side": "long", "leverage": 2.0, "collateral": 100.0, "tolerance": "high", **changes}
    return executor.propose_open(user_id=user_id, thread_id="t1", **terms)  # type: ignore[arg-type]


def approve(executor: Executor, proposal: OrderProposal) -> ExecutionResult:
    return executor.approve(proposal.id, user_id=proposal.user_id, digest=proposal.digest)


def audit_actions(settings: Settings, subject: str) -> list[str]:
    with AuditLog(settings.audit_db) as log:
        return [entry.action for entry in log.entries(subject)]


def chain_ok(settings: Settings) -> bool:
    with AuditLog(settings.audit_db) as log:
        return log.verify().ok


def exact(value: float) -> object:
    return pytest.approx(value, rel=1e-9, abs=1e-12)


def assert_failed_by(result: ExecutionResult, executor: Executor, gate: str, *, detail: str = "") -> None:
    """Failed by ``gate`` (and no other), its name and ``detail`` in the recorded reason, and nothing at the broker."""
    proposal_id = result.proposal.id
    assert result.outcome == "failed" and result.fill is None
    assert result.gates is not None
    assert [check.name for check in result.gates.failures] == [gate], result.gates.describe_failures()
    stored = executor.store.get(proposal_id)
    assert stored.status == "failed"
    assert stored.reason is not None and stored.reason.startswith(f"gate {gate}: "), stored.reason
    assert detail in stored.reason
    assert executor.broker.lookup(proposal_id) is None
    assert audit_actions(executor.settings, proposal_id) == ["proposed", "approved", "submitted", "gates", "failed"]


# The happy path ----------------------------------------------------------------------------------------------------

def test_an_approved_proposal_fills_once_and_every_step_is_audited(
        executor: Executor, paper: PaperBroker, settings: Settings) -> None:
    proposal = propose_btc(executor)
    assert proposal.status == "proposed" and proposal.price == float(BTC)
    assert proposal.size == exact(200 / float(BTC))

    result = approve(executor, proposal)

    # Buy at the oracle plus 0.05% paper slippage; fee 0.06% of the notional 200 * 1.0005 = 200.1: 0.12006.
    assert result.outcome == "filled"
    fill = result.fill
    assert fill is not None and fill == paper.lookup(proposal.id)
    assert (fill.client_id, fill.kind, fill.market, fill.side) == (proposal.id, "open", "BTC", "long")
    assert fill.size == proposal.size
    assert fill.price == exact(float(BTC) * (1 + SLIPPAGE))
    assert fill.fee == exact(0.12006)
    assert fill.filled_at == START
    assert result.gates is not None and result.gates.passed
    assert [check.name for check in result.gates.checks] == GATES
    assert result.discrepancies == []

    stored = executor.store.get(proposal.id)
    assert (stored.status, stored.fill_price, stored.broker_ref) == ("filled", fill.price, fill.broker_ref)
    assert result.proposal == stored

    [position] = paper.positions("alice")
    assert result.position == position
    assert (position.id, position.market, position.side, position.status) == (fill.position_id, "BTC", "long", "open")
    assert (position.size, position.leverage, position.collateral) == (proposal.size, 2.0, 100.0)
    assert position.entry_price == fill.price and position.proposal_id == proposal.id
    assert paper.fills() == [fill]

    assert audit_actions(settings, proposal.id) == ["proposed", "approved", "submitted", "gates", "filled"]
    with AuditLog(settings.audit_db) as log:
        approved, gates, filled = (log.entries(proposal.id)[i] for i in (1, 3, 4))
        assert approved.actor == "alice" and approved.payload["digest"] == proposal.digest
        assert gates.reason == "passed" and gates.payload["price"] == float(BTC)
        assert filled.payload["broker_ref"] == fill.broker_ref and filled.payload["fill_price"] == fill.price
        assert log.verify().ok

    again = executor.execute(proposal.id)  # a repeat returns the recorded outcome and executes nothing
    assert again.outcome == "filled" and again.fill == fill and again.gates is None
    assert paper.fills() == [fill]


# Approval ----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("digest", [
    "0" * 64,
    order_digest(market="BTC", side="long", size=200 / float(BTC), leverage=20.0, collateral=100.0,
                 price_bound=float(BTC) * 1.005),
])
def test_an_approval_of_another_order_executes_nothing(
        executor: Executor, paper: PaperBroker, settings: Settings, digest: str) -> None:
    proposal = propose_btc(executor)

    with pytest.raises(ApprovalRequired, match="needs a new approval"):
        executor.approve(proposal.id, user_id="alice", digest=digest)

    assert executor.store.get(proposal.id).status == "proposed"
    assert paper.fills() == [] and paper.positions("alice") == []
    assert audit_actions(settings, proposal.id) == ["proposed"]


def test_another_users_approval_is_refused(executor: Executor, paper: PaperBroker, settings: Settings) -> None:
    proposal = propose_btc(executor)

    with pytest.raises(ApprovalRequired, match="belongs to another user"):
        executor.approve(proposal.id, user_id="mallory", digest=proposal.digest)

    assert executor.store.get(proposal.id).status == "proposed"
    assert paper.fills() == []
    assert approve(executor, proposal).outcome == "filled"  # its owner still can


def test_an_expired_proposal_is_refused_and_recorded_expired(
        executor: Executor, paper: PaperBroker, settings: Settings, clock: Clock) -> None:
    proposal = propose_btc(executor)
    clock.advance(seconds=settings.proposal_ttl_seconds)

    with pytest.raises(InvalidInput, match="expired"):
        approve(executor, proposal)

    assert executor.store.get(proposal.id).status == "expired"
    with pytest.raises(InvalidInput, match="is expired"):
        executor.execute(proposal.id)
    assert paper.fills() == []
    assert audit_actions(settings, proposal.id) == ["proposed", "expired"]


def test_executing_an_unapproved_proposal_is_refused(executor: Executor, paper: PaperBroker) -> None:
    proposal = propose_btc(executor)

    with pytest.raises(ApprovalRequired, match="not been approved"):
        executor.execute(proposal.id)
    assert executor.store.get(proposal.id).status == "proposed" and paper.fills() == []


# Gates -------------------------------------------------------------------------------------------------------------

def test_a_halt_before_the_claim_blocks_the_open_and_sends_nothing(
        executor: Executor, paper: PaperBroker, settings: Settings, clock: Clock) -> None:
    proposal = propose_btc(executor)
    KillSwitch.from_settings(settings, clock=clock).halt("oracle outage", "ops")

    with pytest.raises(RiskLimitExceeded, match="oracle outage"):
        approve(executor, proposal)

    # Approved, but never claimed: the claim reads the halt in its own transaction.
    assert executor.store.get(proposal.id).status == "approved"
    assert paper.fills() == []
    assert audit_actions(settings, proposal.id) == ["proposed", "approved", "blocked"]


def test_an_open_blocked_by_a_halt_executes_once_when_its_owner_approves_again_after_the_resume(
        executor: Executor, paper: PaperBroker, settings: Settings, clock: Clock) -> None:
    proposal = propose_btc(executor)
    switch = KillSwitch.from_settings(settings, clock=clock)
    switch.halt("oracle outage", "ops")
    with pytest.raises(RiskLimitExceeded):
        approve(executor, proposal)
    switch.resume("ops")

    with pytest.raises(ApprovalRequired, match="belongs to another user"):
        executor.approve(proposal.id, user_id="mallory", digest=proposal.digest)
    with pytest.raises(ApprovalRequired, match="needs a new approval"):
        executor.approve(proposal.id, user_id="alice", digest="0" * 64)
    assert executor.store.get(proposal.id).status == "approved" and paper.fills() == []

    result = approve(executor, proposal)

    assert result.outcome == "filled" and [f.client_id for f in paper.fills()] == [proposal.id]
    assert audit_actions(settings, proposal.id) == ["proposed", "approved", "blocked", "submitted", "gates",
                                                    "filled"]
    with pytest.raises(InvalidInput, match="is filled"):
        approve(executor, proposal)
    assert len(paper.fills()) == 1


def test_a_halt_landing_after_the_claim_fails_the_halt_gate(
        settings: Settings, clock: Clock, paper: PaperBroker, feed: ReplayFeed) -> None:
    executor = Executor(settings, broker=paper, feed=feed, clock=clock, store=HaltingStore(settings, clock))
    proposal = propose_btc(executor)

    result = approve(executor, proposal)

    assert_failed_by(result, executor, "halt", detail="oracle outage")
    assert paper.fills() == []


def test_a_close_passes_while_halted(executor: Executor, paper: PaperBroker, settings: Settings,
                                     clock: Clock) -> None:
    opened = approve(executor, propose_btc(executor))
    assert opened.fill is not None
    KillSwitch.from_settings(settings, clock=clock).halt("oracle outage", "ops")
    with pytest.raises(RiskLimitExceeded):  # no new position while halted
        approve(executor, propose_btc(executor))

    close = executor.propose_close(user_id="alice", thread_id="t1", position_id=opened.fill.position_id)
    result = approve(executor, close)

    assert result.outcome == "filled", result.message
    assert result.gates is not None
    assert [check.name for check in result.gates.checks] == ["halt", "oracle", "slippage", "position"]
    assert "halted, but a close is allowed" in result.gates.checks[0].reason
    assert paper.position(opened.fill.position_id).status == "closed"
    assert [fill.kind for fill in paper.fills()] == ["open", "close"]


def test_a_price_beyond_the_approved_bound_fails_the_slippage_gate(
        settings: Settings, clock: Clock, paper: PaperBroker) -> None:
    feed = MovedFeed(ReplayFeed())
    executor = executor_for(settings, clock, broker=paper, feed=feed)
    proposal = propose_btc(executor)  # bound: the proposal's price + 0.5%
    feed.factor = 1.01  # BTC is up 1% by the time the user says yes

    result = approve(executor, proposal)

    assert_failed_by(result, executor, "slippage", detail="+1.000%")
    assert paper.fills() == []


def test_a_price_that_moved_in_the_orders_favour_passes_the_slippage_gate(
        settings: Settings, clock: Clock, paper: PaperBroker) -> None:
    feed = MovedFeed(ReplayFeed())
    executor = executor_for(settings, clock, broker=paper, feed=feed)
    proposal = propose_btc(executor)
    feed.factor = 0.99  # cheaper to buy

    result = approve(executor, proposal)

    assert result.outcome == "filled"
    assert result.fill is not None and result.fill.price == exact(float(BTC) * 0.99 * (1 + SLIPPAGE))


@pytest.mark.parametrize(("age", "outcome"), [(timedelta(seconds=30), "filled"), (timedelta(minutes=2), "failed")])
def test_a_live_quote_older_than_the_staleness_limit_fails_the_oracle_gate(
        settings: Settings, clock: Clock, paper: PaperBroker, age: timedelta, outcome: str) -> None:
    executor = executor_for(settings, clock, broker=paper, feed=DelayedFeed(ReplayFeed(), clock, age))
    proposal = propose_btc(executor)

    result = approve(executor, proposal)

    assert result.outcome == outcome, result.message
    if outcome == "failed":
        assert_failed_by(result, executor, "oracle", detail="stale: published 120s ago, limit 60s")
        assert paper.fills() == []


@pytest.mark.parametrize(("factor", "outcome"), [(1.01, "filled"), (1.05, "failed")])
def test_a_reference_source_5pct_away_fails_the_oracle_gate_on_divergence(
        settings: Settings, clock: Clock, paper: PaperBroker, feed: ReplayFeed, factor: float, outcome: str) -> None:
    reference = MovedFeed(ReplayFeed(), factor, name="reference")
    executor = executor_for(settings, clock, broker=paper, feed=feed, reference=reference)
    proposal = propose_btc(executor)

    result = approve(executor, proposal)

    assert result.outcome == outcome, result.message
    if outcome == "failed":
        assert_failed_by(result, executor, "oracle", detail="divergence")
        assert "differs 4.761904762% from reference:BTC" in (executor.store.get(proposal.id).reason or "")
        assert paper.fills() == []


def test_an_open_beyond_max_open_positions_fails_the_limits_gate(
        settings: Settings, clock: Clock, paper: PaperBroker, feed: ReplayFeed) -> None:
    executor = executor_for(settings.model_copy(update={"max_open_positions": 1}), clock, broker=paper, feed=feed)
    assert approve(executor, propose_btc(executor)).outcome == "filled"

    result = approve(executor, propose_btc(executor))

    assert_failed_by(result, executor, "limits", detail="1 positions open, the limit is 1")
    assert len(paper.fills()) == 1 and len(paper.positions("alice")) == 1


def test_an_open_above_the_notional_limit_fails_the_limits_gate(
        settings: Settings, clock: Clock, paper: PaperBroker, feed: ReplayFeed) -> None:
    executor = executor_for(settings.model_copy(update={"max_position_notional": 150.0}), clock, broker=paper,
                            feed=feed)

    result = approve(executor, propose_btc(executor))  # notional 200 USD

    assert_failed_by(result, executor, "limits", detail="notional 200.00 USD is above the 150.00 USD limit")
    assert paper.fills() == []


def test_an_open_above_the_leverage_limit_fails_the_limits_gate(
        settings: Settings, clock: Clock, paper: PaperBroker, feed: ReplayFeed) -> None:
    executor = executor_for(settings.model_copy(update={"max_leverage": 1.5}), clock, broker=paper, feed=feed)

    result = approve(executor, propose_btc(executor))

    assert_failed_by(result, executor, "limits", detail="leverage 2x is above the 1.5x limit")
    assert paper.fills() == []


def test_a_realised_loss_today_beyond_the_limit_fails_the_daily_loss_gate_until_tomorrow(
        settings: Settings, clock: Clock, paper: PaperBroker, feed: ReplayFeed) -> None:
    executor = executor_for(settings.model_copy(update={"daily_loss_limit": 10.0}), clock, broker=paper, feed=feed)
    # A SOL long bought at 20 and sold at 18 through the paper broker: about -20 USD realised this morning.
    bought = paper.submit(OrderRequest(client_id="loss-open", user_id="alice", market="SOL", side="long", size=10.0,
                                       leverage=1.0, collateral=200.0, price_bound=1e9), oracle_price=20.0)
    paper.submit(OrderRequest(client_id="loss-close", user_id="alice", kind="close", market="SOL", side="long",
                              size=10.0, leverage=1.0, collateral=200.0, price_bound=1e-9,
                              position_id=bought.position_id), oracle_price=18.0)
    loss = paper.realised_since("alice", START - timedelta(hours=12))
    # Entry 20.01, exit 17.991: -20.19 of price; fees 0.0006 * (200.1 + 179.91) = 0.228006.
    assert loss == exact(-20.19 - 0.228006)

    result = approve(executor, propose_btc(executor))

    assert_failed_by(result, executor, "daily_loss", detail="today's PnL is -20.42 USD")
    assert len(paper.fills()) == 2

    clock.advance(days=1)  # a new UTC day: yesterday's loss no longer counts
    assert approve(executor, propose_btc(executor)).outcome == "filled"


def test_a_leveraged_sol_long_at_medium_tolerance_fails_the_risk_gate(
        executor: Executor, paper: PaperBroker) -> None:
    proposal = executor.propose_open(user_id="alice", thread_id="t1", market="SOL", side="long", leverage=5.0,
                                     collateral=100.0)

    result = approve(executor, proposal)

    assert_failed_by(result, executor, "risk", detail="max_daily_loss")
    assert paper.fills() == []


# Twenty approvals, two processes -----------------------------------------------------------------------------------

def _approve_in_process(home: str, proposal_id: str, digest: str, barrier: object, results: object) -> None:
    """One process with its own executor on the shared home: ten threads approving the proposal at once; a thread
    refused the approval asks for the outcome instead."""
    settings = Settings(home=Path(home), memory_enabled=False, cache_enabled=False)
    executor = Executor(settings, broker=PaperBroker.from_settings(settings), feed=ReplayFeed(), retry_pause=0.0)
    start = threading.Barrier(10)
    outcomes: list[tuple[str, str, bool]] = []

    def attempt() -> None:
        start.wait()
        try:
            result = executor.approve(proposal_id, user_id="alice", digest=digest)
            answer = "approved"
        except InvalidInput as exc:
            answer = f"refused: {exc}"
            result = executor.execute(proposal_id)
        except BaseException as exc:  # reported, so the parent's assertion shows it
            outcomes.append((f"error: {exc!r}", "", False))
            return
        outcomes.append((answer, result.outcome, result.gates is not None))

    threads = [threading.Thread(target=attempt) for _ in range(10)]
    barrier.wait()  # type: ignore[attr-defined]  # both processes' threads start together
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    results.put(outcomes)  # type: ignore[attr-defined]


def test_twenty_approvals_from_two_processes_fill_once(settings: Settings) -> None:
    paper = PaperBroker.from_settings(settings)  # the real clock: the racing processes use it too
    executor = Executor(settings, broker=paper, feed=ReplayFeed())
    proposal = propose_btc(executor)
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(2), context.Queue()
    processes = [context.Process(target=_approve_in_process,
                                 args=(str(settings.home), proposal.id, proposal.digest, barrier, results))
                 for _ in range(2)]
    for process in processes:
        process.start()
    outcomes = [outcome for _ in processes for outcome in results.get(timeout=120)]
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0

    assert len(outcomes) == 20
    assert not [answer for answer, _, _ in outcomes if answer.startswith("error")], outcomes
    # A thread that read the proposal pending approved it; one that read it approved (by another thread) executes
    # it, which is how an owner's repeated yes finishes it; one that read it claimed or settled is refused.
    refusals = [answer for answer, _, _ in outcomes if answer != "approved"]
    assert all(any(f"is {status}, so it cannot" in answer for status in ("approved", "submitted", "filled"))
               for answer in refusals), refusals
    # One thread ran the gates and the broker; everyone else got the settled outcome (or saw it still in flight).
    assert [outcome for _, outcome, ran in outcomes if ran] == ["filled"]
    assert {outcome for _, outcome, ran in outcomes if not ran} <= {"filled", "in_flight"}

    [fill] = paper.fills()
    assert fill.client_id == proposal.id and len(paper.positions("alice")) == 1
    stored = executor.store.get(proposal.id)
    assert (stored.status, stored.broker_ref) == ("filled", fill.broker_ref)
    # Each transition once. Their order in the log may differ from the order they happened in: a transition is
    # appended after its own transaction commits, so another thread's claim can be logged before the approval it
    # followed.
    actions = audit_actions(settings, proposal.id)
    assert sorted(actions) == sorted(["proposed", "approved", "submitted", "gates", "filled"]), actions
    assert actions[0] == "proposed"
    assert [action for action in actions if action in ("submitted", "gates", "filled")] == ["submitted", "gates",
                                                                                             "filled"]
    assert chain_ok(settings)


# A broker that does not answer -------------------------------------------------------------------------------------

def test_a_lost_answer_is_retried_under_the_same_id_and_fills_once(
        settings: Settings, clock: Clock, paper: PaperBroker, feed: ReplayFeed) -> None:
    broker = LostAnswerBroker(paper)
    executor = executor_for(settings, clock, broker=broker, feed=feed)
    proposal = propose_btc(executor)

    result = approve(executor, proposal)

    assert result.outcome == "filled"
    assert broker.submitted == [proposal.id, proposal.id]  # retried, keyed by the proposal's id
    [fill] = paper.fills()
    assert result.fill == fill
    assert len(paper.positions("alice")) == 1
    assert executor.store.get(proposal.id).broker_ref == fill.broker_ref
    assert audit_actions(settings, proposal.id).count("filled") == 1


def test_a_broker_that_never_answers_leaves_it_in_flight_and_it_is_never_sent_again(
        settings: Settings, clock: Clock, paper: PaperBroker, feed: ReplayFeed) -> None:
    broker = DownBroker(paper)
    executor = executor_for(settings, clock, broker=broker, feed=feed, submit_attempts=3)
    proposal = propose_btc(executor)

    result = approve(executor, proposal)

    assert result.outcome == "in_flight", result.message
    assert "never sent again" in result.message
    assert broker.submitted == [proposal.id] * 3
    assert executor.store.get(proposal.id).status == "submitted"
    assert [p.id for p in executor.store.in_flight()] == [proposal.id]

    assert executor.execute(proposal.id).outcome == "in_flight"
    with pytest.raises(InvalidInput, match="is submitted"):
        approve(executor, proposal)
    assert broker.submitted == [proposal.id] * 3  # not sent again
    assert paper.fills() == []

    # Its own executor is no longer submitting it: a reconciliation asks the broker, which never executed it.
    [reconciled] = executor.reconcile()
    assert reconciled.outcome == "failed"
    assert executor.store.get(proposal.id).status == "failed"
    assert "the broker has no execution of it" in (executor.store.get(proposal.id).reason or "")


def test_an_order_a_live_process_gave_up_on_is_reconciled_by_mikey_positions_list(
        settings: Settings, clock: Clock, paper: PaperBroker, feed: ReplayFeed) -> None:
    """The in-flight message tells the user that `mikey positions list` reconciles the order. This process (a chat
    server, say) stays up after giving up on the broker, so the CLI's reconciliation must still settle it."""
    executor = executor_for(settings, clock, broker=DownBroker(paper), feed=feed)
    proposal = propose_btc(executor)
    result = approve(executor, proposal)
    assert result.outcome == "in_flight" and "`mikey positions list` reconciles it" in result.message

    done = run_mikey("positions", "list", env={"MIKEY_HOME": str(settings.home)})

    assert done.returncode == 0, done.stderr
    stored = executor.store.get(proposal.id)
    assert stored.status == "failed", "still in flight after `mikey positions list`: its claimer is alive"
    assert "the broker has no execution of it" in (stored.reason or "")


CLAIM_AND_EXIT = """
import sys
from pathlib import Path
from mikey.execution.proposals import ProposalStore

execution_db, audit_db, proposal_id = sys.argv[1:4]
store = ProposalStore(Path(execution_db), audit=Path(audit_db))
assert store.claim_for_submission(proposal_id)
print(store.get(proposal_id).claimed_by)
"""


def test_a_reconciliation_fails_a_claim_whose_process_is_gone_and_the_broker_never_saw(
        executor: Executor, paper: PaperBroker, settings: Settings) -> None:
    proposal = propose_btc(executor)
    executor.store.approve(proposal.id, user_id="alice", digest=proposal.digest)
    done = subprocess.run([sys.executable, "-c", CLAIM_AND_EXIT, str(settings.execution_db), str(settings.audit_db),
                           proposal.id], capture_output=True, text=True, env=mikey_env(), cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    host, _, pid = done.stdout.strip().rpartition(":")
    assert host == socket.gethostname() and int(pid) != os.getpid()  # a process of this host, now gone
    assert executor.store.get(proposal.id).status == "submitted"

    [result] = executor_for(settings, Clock(), broker=paper, feed=ReplayFeed()).reconcile()

    assert result.outcome == "failed"
    stored = executor.store.get(proposal.id)
    assert stored.status == "failed"
    assert stored.reason == ("MIKEY stopped after claiming it and the broker has no execution of it: not executed")
    assert audit_actions(settings, proposal.id) == ["proposed", "approved", "submitted", "reconciled", "failed"]
    assert paper.fills() == [] and chain_ok(settings)


def test_a_reconciliation_leaves_a_live_claimer_alone_and_takes_over_a_silent_remote_one(
        executor: Executor, paper: PaperBroker, clock: Clock) -> None:
    live, remote = propose_btc(executor), propose_btc(executor)
    for proposal, claimer in ((live, f"{socket.gethostname()}:{os.getppid()}"), (remote, "elsewhere:4242")):
        executor.store.approve(proposal.id, user_id="alice", digest=proposal.digest)
        assert executor.store.claim_for_submission(proposal.id, claimer=claimer)

    assert executor.reconcile() == []  # both claimers may still be submitting

    clock.advance(hours=1, seconds=1)  # another host's claim is taken over once it has been silent an hour
    [result] = executor.reconcile()
    assert result.proposal.id == remote.id and result.outcome == "failed"
    assert executor.store.get(live.id).status == "submitted"


# Killed between the broker's fill and MIKEY's record ---------------------------------------------------------------

DIE_AFTER_SUBMIT = """
import os
import signal
import sys
from pathlib import Path

from mikey.execution.executor import Executor
from mikey.execution.paper import PaperBroker
from mikey.market.replay import ReplayFeed
from mikey.settings import Settings


class DiesAfterSubmit(PaperBroker):
    def submit(self, order, *, oracle_price):
        fill = super().submit(order, oracle_price=oracle_price)
        os.kill(os.getpid(), signal.SIGKILL)  # the fill is in the ledger; MIKEY never hears of it
        return fill


home, proposal_id, digest = sys.argv[1:4]
settings = Settings(home=Path(home), memory_enabled=False, cache_enabled=False)
executor = Executor(settings, broker=DiesAfterSubmit.from_settings(settings), feed=ReplayFeed())
executor.approve(proposal_id, user_id="alice", digest=digest)
raise SystemExit("survived its own submit")
"""


def test_a_kill_between_the_brokers_fill_and_the_record_is_reconciled_from_the_broker(settings: Settings) -> None:
    paper = PaperBroker.from_settings(settings)  # the real clock, as in the killed process
    proposal = propose_btc(Executor(settings, broker=paper, feed=ReplayFeed()))

    done = subprocess.run([sys.executable, "-c", DIE_AFTER_SUBMIT, str(settings.home), proposal.id, proposal.digest],
                          capture_output=True, text=True, env=mikey_env(), cwd=REPO, timeout=120)
    assert done.returncode == -signal.SIGKILL, done.stderr

    store = ProposalStore.from_settings(settings)
    assert store.get(proposal.id).status == "submitted"
    [fill] = paper.fills()
    assert fill.client_id == proposal.id

    restarted = Executor(settings, broker=PaperBroker.from_settings(settings), feed=ReplayFeed())
    [result] = restarted.reconcile()

    assert result.outcome == "filled" and result.fill == fill
    stored = store.get(proposal.id)
    assert (stored.status, stored.broker_ref, stored.fill_price) == ("filled", fill.broker_ref, fill.price)
    assert [p.id for p in paper.positions("alice")] == [fill.position_id]
    assert audit_actions(settings, proposal.id) == ["proposed", "approved", "submitted", "gates", "reconciled",
                                                    "filled"]
    assert chain_ok(settings)

    assert restarted.reconcile() == []
    assert restarted.execute(proposal.id).outcome == "filled"
    with pytest.raises(InvalidInput, match="is filled"):
        restarted.approve(proposal.id, user_id="alice", digest=proposal.digest)
    assert paper.fills() == [fill] and len(paper.positions("alice", include_closed=True)) == 1


# Closing and reducing ----------------------------------------------------------------------------------------------

def test_a_reduce_then_a_close_through_the_executor(
        executor: Executor, paper: PaperBroker, settings: Settings, clock: Clock) -> None:
    opened = approve(executor, propose_btc(executor)).fill
    assert opened is not None
    clock.advance(hours=2)

    half = executor.propose_close(user_id="alice", thread_id="t1", position_id=opened.position_id, fraction=0.5)
    assert (half.kind, half.position_id, half.side) == ("reduce", opened.position_id, "long")
    assert half.size == exact(opened.size / 2) and half.collateral == exact(50.0)
    assert half.price_bound == exact(float(BTC) * (1 - settings.max_slippage))  # a sell: bounded below
    reduced = approve(executor, half)

    assert reduced.outcome == "filled", reduced.message
    fill = reduced.fill
    assert fill is not None and (fill.kind, fill.size) == ("reduce", half.size)
    # Sell at BTC * 0.9995; the entry was BTC * 1.0005, so the price loses 0.1% of the 100 USD closed: -0.1.
    # Fee 0.0006 * 100 * 0.9995 = 0.05997. Funding for 2 hours on 200.1 of entry notional: 0.0050025.
    assert fill.price == exact(float(BTC) * (1 - SLIPPAGE))
    assert fill.fee == exact(0.05997)
    assert fill.realised_pnl == exact(-0.1 - 0.05997 - 0.0050025)
    position = paper.position(opened.position_id)
    assert position.status == "open"
    assert position.size == exact(opened.size / 2) and position.collateral == exact(50.0)
    assert position.realised_pnl == exact(-0.12006 - 0.1 - 0.05997 - 0.0050025)
    assert reduced.position == position

    rest = executor.propose_close(user_id="alice", thread_id="t1", position_id=opened.position_id)
    assert rest.kind == "close" and rest.size == position.size
    closed = approve(executor, rest)

    assert closed.outcome == "filled"
    final = paper.position(opened.position_id)
    assert final.status == "closed" and final.size == 0.0
    assert sum(f.realised_pnl for f in paper.fills("alice")) == exact(final.realised_pnl)
    assert audit_actions(settings, rest.id) == ["proposed", "approved", "submitted", "gates", "filled"]


def test_a_second_close_of_a_closed_position_fails_the_position_gate(
        executor: Executor, paper: PaperBroker) -> None:
    opened = approve(executor, propose_btc(executor)).fill
    assert opened is not None
    first = executor.propose_close(user_id="alice", thread_id="t1", position_id=opened.position_id)
    second = executor.propose_close(user_id="alice", thread_id="t1", position_id=opened.position_id)
    assert approve(executor, first).outcome == "filled"

    result = approve(executor, second)

    assert result.outcome == "failed"
    assert result.gates is not None and [c.name for c in result.gates.failures] == ["position"]
    assert "already closed" in (executor.store.get(second.id).reason or "")
    assert len(paper.fills()) == 2


def test_another_users_position_cannot_be_closed(executor: Executor, paper: PaperBroker) -> None:
    opened = approve(executor, propose_btc(executor)).fill
    assert opened is not None

    with pytest.raises(NotFound, match="no position"):
        executor.propose_close(user_id="mallory", thread_id="t1", position_id=opened.position_id)
    close = executor.propose_close(user_id="alice", thread_id="t1", position_id=opened.position_id)
    with pytest.raises(ApprovalRequired, match="belongs to another user"):
        executor.approve(close.id, user_id="mallory", digest=close.digest)

    assert executor.store.find(user_id="mallory") == []
    assert paper.position(opened.position_id).status == "open"
    assert len(paper.fills()) == 1
