"""The paper broker: fill prices, fees, realised PnL and funding checked against values worked out by hand; refusals
that write nothing; exactly one fill when twenty threads or two processes submit one order at once."""

from __future__ import annotations

import math
import multiprocessing
import sqlite3
import threading
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mikey.errors import InvalidInput, NotFound, OrderRejected
from mikey.execution.broker import Broker, BrokerPosition, Fill, OrderRequest, open_broker
from mikey.execution.paper import PaperBroker
from mikey.settings import Settings

START = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
SLIPPAGE = 0.001
FEE_RATE = 0.0005
FUNDING_HOURLY = 0.0001
ANY_BUY = 1e9  # a price bound no buy reaches
ANY_SELL = 1e-9  # a price bound every sell beats


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, hours: float) -> None:
        self.now += timedelta(hours=hours)


def exact(value: float) -> object:
    """Equal up to float rounding: the hand-worked values below are exact decimals."""
    return pytest.approx(value, rel=1e-12, abs=1e-12)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "paper.sqlite"


@pytest.fixture
def broker(path: Path, clock: Clock) -> PaperBroker:
    return PaperBroker(path, slippage=SLIPPAGE, fee_rate=FEE_RATE, funding_rate_hourly=FUNDING_HOURLY, clock=clock)


def open_order(client_id: str = "p1", *, side: str = "long", size: float = 2.0, bound: float | None = None,
               user_id: str = "alice", market: str = "SOL") -> OrderRequest:
    return OrderRequest(client_id=client_id, user_id=user_id, kind="open", market=market, side=side, size=size,
                        leverage=5.0, collateral=40.0,
                        price_bound=bound if bound is not None else (ANY_BUY if side == "long" else ANY_SELL))


def exit_order(position: BrokerPosition, client_id: str, *, kind: str = "close", size: float | None = None,
               bound: float | None = None, **changes: object) -> OrderRequest:
    """Close or reduce ``position``: a sell for a long, a buy for a short."""
    terms = {"client_id": client_id, "user_id": position.user_id, "kind": kind, "market": position.market,
             "side": position.side, "size": size if size is not None else position.size, "leverage": 5.0,
             "collateral": 10.0, "position_id": position.id,
             "price_bound": bound if bound is not None else (ANY_SELL if position.side == "long" else ANY_BUY)}
    return OrderRequest(**{**terms, **changes})


def rows(path: Path, table: str) -> list[tuple]:
    with closing(sqlite3.connect(path)) as conn:
        return conn.execute(f"SELECT * FROM {table} ORDER BY rowid").fetchall()


# The protocol ------------------------------------------------------------------------------------------------------

def test_it_is_the_default_broker_and_implements_the_protocol(settings: Settings) -> None:
    broker = open_broker(settings)

    assert isinstance(broker, PaperBroker)
    assert isinstance(broker, Broker)
    assert broker.name == "paper"
    assert broker.lookup("nothing") is None
    assert settings.paper_db.exists()
    broker.close()


# Opening -----------------------------------------------------------------------------------------------------------

def test_an_open_long_buys_above_the_oracle_and_pays_the_fee(broker: PaperBroker) -> None:
    fill = broker.submit(open_order(size=2.0), oracle_price=100.0)

    # A buy moves the price up: 100 * (1 + 0.001) = 100.1. Fee: 0.0005 * 100.1 * 2 = 0.1001.
    assert fill.kind == "open" and fill.side == "long" and fill.size == 2.0
    assert fill.price == exact(100.1)
    assert fill.fee == exact(0.1001)
    assert fill.realised_pnl == exact(-0.1001)  # the fee is realised when paid
    assert fill.broker_ref.startswith("paper-") and fill.filled_at == START

    position = broker.position(fill.position_id)
    assert (position.user_id, position.market, position.side, position.status) == ("alice", "SOL", "long", "open")
    assert position.entry_price == exact(100.1)
    assert (position.size, position.collateral, position.leverage) == (2.0, 40.0, 5.0)
    assert position.fees == exact(0.1001)
    assert position.realised_pnl == exact(-0.1001)
    assert (position.funding, position.exit_price, position.closed_at) == (0.0, None, None)
    assert position.opened_at == START and position.proposal_id == "p1"


def test_an_open_short_sells_below_the_oracle(broker: PaperBroker) -> None:
    fill = broker.submit(open_order(side="short", size=4.0), oracle_price=50.0)

    # A sell moves the price down: 50 * (1 - 0.001) = 49.95. Fee: 0.0005 * 49.95 * 4 = 0.0999.
    assert fill.price == exact(49.95)
    assert fill.fee == exact(0.0999)
    assert broker.position(fill.position_id).entry_price == exact(49.95)


# Reducing and closing ----------------------------------------------------------------------------------------------

def test_a_long_reduced_then_closed_realises_its_pnl_net_of_fees(broker: PaperBroker, clock: Clock) -> None:
    opened = broker.position(broker.submit(open_order(size=2.0), oracle_price=100.0).position_id)  # entry 100.1

    reduced = broker.submit(exit_order(opened, "p2", kind="reduce", size=0.5), oracle_price=110.0)
    # Sell: 110 * 0.999 = 109.89. Fee: 0.0005 * 109.89 * 0.5 = 0.0274725.
    # PnL: (109.89 - 100.1) * 0.5 - 0.0274725 = 4.895 - 0.0274725 = 4.8675275.
    assert (reduced.kind, reduced.size) == ("reduce", 0.5)
    assert reduced.price == exact(109.89)
    assert reduced.fee == exact(0.0274725)
    assert reduced.realised_pnl == exact(4.8675275)
    after_reduce = broker.position(opened.id)
    assert after_reduce.status == "open"
    assert after_reduce.size == exact(1.5)
    assert after_reduce.collateral == exact(30.0)  # 40 - 40 * 0.5 / 2 released
    assert after_reduce.exit_price == exact(109.89)
    assert after_reduce.realised_pnl == exact(-0.1001 + 4.8675275)  # 4.7674275

    closed = broker.submit(exit_order(after_reduce, "p3"), oracle_price=120.0)
    # Sell: 120 * 0.999 = 119.88. Fee: 0.0005 * 119.88 * 1.5 = 0.08991.
    # PnL: (119.88 - 100.1) * 1.5 - 0.08991 = 29.67 - 0.08991 = 29.58009.
    assert closed.price == exact(119.88)
    assert closed.fee == exact(0.08991)
    assert closed.realised_pnl == exact(29.58009)

    final = broker.position(opened.id)
    assert (final.status, final.size, final.collateral, final.closed_at) == ("closed", 0.0, 0.0, START)
    # Size-weighted exit: (109.89 * 0.5 + 119.88 * 1.5) / 2 = (54.945 + 179.82) / 2 = 117.3825.
    assert final.exit_price == exact(117.3825)
    # -0.1001 + 4.8675275 + 29.58009 = 34.3475175; fees 0.1001 + 0.0274725 + 0.08991 = 0.2174825.
    assert final.realised_pnl == exact(34.3475175)
    assert final.fees == exact(0.2174825)
    assert sum(f.realised_pnl for f in broker.fills("alice")) == exact(final.realised_pnl)


def test_a_short_reduced_at_a_loss_then_closed_at_a_gain(broker: PaperBroker) -> None:
    opened = broker.position(broker.submit(open_order(side="short", size=4.0), oracle_price=50.0).position_id)

    reduced = broker.submit(exit_order(opened, "p2", kind="reduce", size=1.0), oracle_price=55.0)
    # Buy: 55 * 1.001 = 55.055. Fee: 0.0005 * 55.055 * 1 = 0.0275275.
    # PnL: -(55.055 - 49.95) * 1 - 0.0275275 = -5.105 - 0.0275275 = -5.1325275.
    assert reduced.price == exact(55.055)
    assert reduced.fee == exact(0.0275275)
    assert reduced.realised_pnl == exact(-5.1325275)

    closed = broker.submit(exit_order(broker.position(opened.id), "p3"), oracle_price=45.0)
    # Buy: 45 * 1.001 = 45.045. Fee: 0.0005 * 45.045 * 3 = 0.0675675.
    # PnL: -(45.045 - 49.95) * 3 - 0.0675675 = 14.715 - 0.0675675 = 14.6474325.
    assert closed.size == 3.0
    assert closed.price == exact(45.045)
    assert closed.fee == exact(0.0675675)
    assert closed.realised_pnl == exact(14.6474325)

    final = broker.position(opened.id)
    assert final.status == "closed"
    # Exit: (55.055 * 1 + 45.045 * 3) / 4 = (55.055 + 135.135) / 4 = 190.19 / 4 = 47.5475.
    assert final.exit_price == exact(47.5475)
    # Open fee 0.0999: 14.6474325 - 5.1325275 = 9.514905; 9.514905 - 0.0999 = 9.415005.
    assert final.realised_pnl == exact(9.415005)


# Funding -----------------------------------------------------------------------------------------------------------

def test_funding_accrues_on_entry_notional_longs_pay_shorts_receive(broker: PaperBroker, clock: Clock) -> None:
    long = broker.submit(open_order("p1", side="long", size=2.0), oracle_price=100.0)  # entry 100.1, fee 0.1001
    short = broker.submit(open_order("p2", side="short", size=4.0), oracle_price=50.0)  # entry 49.95, fee 0.0999

    clock.advance(hours=8)

    # Long: 0.0001 per hour * (100.1 * 2) * 8 hours = 0.0001 * 200.2 * 8 = 0.16016, paid.
    paying = broker.position(long.position_id)
    assert paying.funding == exact(0.16016)
    assert paying.realised_pnl == exact(-0.1001 - 0.16016)  # -0.26026
    # Short: 0.0001 * (49.95 * 4) * 8 = 0.0001 * 199.8 * 8 = 0.15984, received.
    receiving = broker.position(short.position_id)
    assert receiving.funding == exact(-0.15984)
    assert receiving.realised_pnl == exact(-0.0999 + 0.15984)  # 0.05994
    assert [p.funding for p in broker.positions("alice")] == [receiving.funding, paying.funding]


def test_a_reduce_settles_funding_first_and_later_funding_runs_on_the_smaller_size(
        broker: PaperBroker, clock: Clock) -> None:
    opened = broker.position(broker.submit(open_order(size=2.0), oracle_price=100.0).position_id)  # entry 100.1
    clock.advance(hours=8)

    reduced = broker.submit(exit_order(opened, "p2", kind="reduce", size=0.5), oracle_price=110.0)
    # 8 hours on 200.2 of notional: 0.16016 settled. The fill reports it with the trade:
    # 4.8675275 (as in the long test above) - 0.16016 = 4.7073675.
    assert reduced.realised_pnl == exact(4.7073675)
    settled = broker.position(opened.id)
    assert settled.funding == exact(0.16016)

    clock.advance(hours=2)
    # Now 1.5 open: 0.0001 * (100.1 * 1.5) * 2 = 0.0001 * 150.15 * 2 = 0.03003 more.
    later = broker.position(opened.id)
    assert later.funding == exact(0.16016 + 0.03003)  # 0.19019
    assert later.realised_pnl == exact(settled.realised_pnl - 0.03003)

    closed = broker.submit(exit_order(later, "p3"), oracle_price=120.0)
    # 29.58009 (as in the long test above) - 0.03003 = 29.55006.
    assert closed.realised_pnl == exact(29.55006)
    final = broker.position(opened.id)
    # -0.1001 + 4.7073675 + 29.55006 = 34.1573275, which is 34.3475175 - 0.19019 of funding.
    assert final.realised_pnl == exact(34.1573275)
    assert final.funding == exact(0.19019)

    clock.advance(hours=24)
    assert broker.position(opened.id) == final  # a closed position accrues nothing


def test_accrue_funding_settles_every_open_position_once(broker: PaperBroker, clock: Clock, path: Path) -> None:
    long = broker.submit(open_order("p1", size=2.0), oracle_price=100.0)
    short = broker.submit(open_order("p2", side="short", size=4.0, user_id="bob"), oracle_price=50.0)
    clock.advance(hours=8)
    computed = [broker.position(long.position_id), broker.position(short.position_id)]

    assert broker.accrue_funding() == 2
    written = rows(path, "positions")
    assert broker.accrue_funding() == 2  # same clock time: nothing moves
    assert rows(path, "positions") == written
    assert [broker.position(long.position_id), broker.position(short.position_id)] == computed
    assert computed[0].funding == exact(0.16016) and computed[1].funding == exact(-0.15984)

    clock.advance(hours=8)  # 8 more hours accrue on top of what was settled
    assert broker.position(long.position_id).funding == exact(2 * 0.16016)


def test_realised_since_counts_fills_at_or_after_the_moment(broker: PaperBroker, clock: Clock) -> None:
    opened = broker.position(broker.submit(open_order(size=2.0), oracle_price=100.0).position_id)  # -0.1001
    clock.advance(hours=1)
    reduced_at = clock.now
    broker.submit(exit_order(opened, "p2", kind="reduce", size=0.5), oracle_price=110.0)
    # 1 hour of funding on 200.2: 0.02002; reduce fill: 4.8675275 - 0.02002 = 4.8475075.
    broker.submit(open_order("p9", user_id="bob"), oracle_price=100.0)  # another user's fee

    assert broker.realised_since("alice", START) == exact(-0.1001 + 4.8475075)
    assert broker.realised_since("alice", reduced_at) == exact(4.8475075)
    assert broker.realised_since("alice", reduced_at + timedelta(microseconds=1)) == 0.0
    assert broker.realised_since("carol", START) == 0.0
    assert [f.client_id for f in broker.fills(since=reduced_at)] == ["p2", "p9"]
    assert [f.client_id for f in broker.fills("alice")] == ["p1", "p2"]
    with pytest.raises(InvalidInput, match="timezone"):
        broker.realised_since("alice", datetime(2026, 12, 3))  # naive: which midnight is unknowable


# Idempotency and lookup --------------------------------------------------------------------------------------------

def test_a_second_submit_of_a_client_id_returns_the_first_fill_and_executes_nothing(
        broker: PaperBroker, clock: Clock, path: Path) -> None:
    first = broker.submit(open_order("p1"), oracle_price=100.0)
    clock.advance(hours=1)

    again = broker.submit(open_order("p1"), oracle_price=130.0)

    assert again == first
    assert broker.lookup("p1") == first
    assert len(rows(path, "fills")) == 1 and len(rows(path, "positions")) == 1


def test_lookup_finds_closes_as_well_as_opens(broker: PaperBroker) -> None:
    opened = broker.submit(open_order("p1"), oracle_price=100.0)
    closed = broker.submit(exit_order(broker.position(opened.position_id), "p2"), oracle_price=100.0)

    assert broker.lookup("p1") == opened
    assert broker.lookup("p2") == closed
    assert broker.lookup("p3") is None


# Reading positions -------------------------------------------------------------------------------------------------

def test_positions_list_open_ones_first_newest_first(broker: PaperBroker, clock: Clock) -> None:
    ids = []
    for client_id in ("a", "b", "c"):
        ids.append(broker.submit(open_order(client_id), oracle_price=100.0).position_id)
        clock.advance(hours=1)
    broker.submit(exit_order(broker.position(ids[2]), "close-c"), oracle_price=100.0)  # the newest, closed
    broker.submit(open_order("other", user_id="bob"), oracle_price=100.0)

    assert [p.id for p in broker.positions("alice")] == [ids[1], ids[0]]
    assert [p.id for p in broker.positions("alice", include_closed=True)] == [ids[1], ids[0], ids[2]]
    assert broker.positions("carol") == []


def test_an_unknown_position_is_not_found(broker: PaperBroker) -> None:
    with pytest.raises(NotFound, match="nope"):
        broker.position("nope")


# Refusals write nothing --------------------------------------------------------------------------------------------

def test_a_buy_filling_above_its_bound_is_refused_naming_both_prices(broker: PaperBroker, path: Path) -> None:
    # Fill 100 * 1.001 = 100.1, above the bound 100.05.
    with pytest.raises(OrderRejected, match=r"100\.1.*100\.05"):
        broker.submit(open_order(bound=100.05), oracle_price=100.0)

    assert broker.lookup("p1") is None
    assert rows(path, "fills") == [] and rows(path, "positions") == []


def test_a_sell_filling_below_its_bound_is_refused_and_the_position_is_untouched(
        broker: PaperBroker, path: Path) -> None:
    opened = broker.position(broker.submit(open_order(), oracle_price=100.0).position_id)
    before = rows(path, "positions"), rows(path, "fills")

    # Fill 100 * 0.999 = 99.9, below the bound 99.95.
    with pytest.raises(OrderRejected, match=r"99\.9.*99\.95"):
        broker.submit(exit_order(opened, "p2", bound=99.95), oracle_price=100.0)

    assert (rows(path, "positions"), rows(path, "fills")) == before
    # At the bound exactly it fills: 99.9 is not worse than 99.9.
    assert broker.submit(exit_order(opened, "p3", bound=100.0 * (1 - SLIPPAGE)), oracle_price=100.0).price \
        == exact(99.9)


@pytest.mark.parametrize("oracle_price", [math.nan, math.inf, -math.inf, 0.0, -100.0])
def test_a_bad_oracle_price_is_invalid_input(broker: PaperBroker, path: Path, oracle_price: float) -> None:
    with pytest.raises(InvalidInput, match="oracle price"):
        broker.submit(open_order(), oracle_price=oracle_price)

    assert rows(path, "fills") == [] and rows(path, "positions") == []


@pytest.mark.parametrize(("changes", "reason"), [
    ({"user_id": "bob"}, "another user"),
    ({"position_id": None}, "names no position"),
    ({"position_id": "nope"}, "no position"),
    ({"side": "short", "price_bound": ANY_BUY}, "long"),
    ({"market": "BTC"}, "SOL"),
    ({"size": 1.9}, "whole open size"),
    ({"kind": "reduce"}, "less than"),
    ({"kind": "reduce", "size": 2.5}, "less than"),
])
def test_a_close_or_reduce_that_does_not_match_its_position_is_refused(
        broker: PaperBroker, path: Path, changes: dict, reason: str) -> None:
    opened = broker.position(broker.submit(open_order(size=2.0), oracle_price=100.0).position_id)
    before = rows(path, "positions"), rows(path, "fills")

    with pytest.raises(OrderRejected, match=reason):
        broker.submit(exit_order(opened, "p2", **changes), oracle_price=100.0)

    assert (rows(path, "positions"), rows(path, "fills")) == before


def test_a_closed_position_cannot_be_closed_again(broker: PaperBroker) -> None:
    opened = broker.position(broker.submit(open_order(), oracle_price=100.0).position_id)
    broker.submit(exit_order(opened, "p2"), oracle_price=100.0)

    with pytest.raises(OrderRejected, match="closed"):
        broker.submit(exit_order(opened, "p3"), oracle_price=100.0)


def test_a_close_within_rounding_of_the_open_size_closes_all_of_it(broker: PaperBroker) -> None:
    opened = broker.position(broker.submit(open_order(size=2.0), oracle_price=100.0).position_id)

    fill = broker.submit(exit_order(opened, "p2", size=2.0 * (1 + 1e-12)), oracle_price=100.0)

    assert fill.size == 2.0
    assert broker.position(opened.id).status == "closed"


def test_an_open_naming_a_position_is_refused(broker: PaperBroker) -> None:
    order = open_order().model_copy(update={"position_id": "abc"})
    with pytest.raises(OrderRejected, match="names a position"):
        broker.submit(order, oracle_price=100.0)


@pytest.mark.parametrize("changes", [{"slippage": -0.1}, {"slippage": 1.0}, {"fee_rate": -0.01},
                                     {"fee_rate": math.nan}, {"funding_rate_hourly": math.inf}])
def test_unusable_parameters_are_refused(path: Path, changes: dict) -> None:
    terms = {"slippage": SLIPPAGE, "fee_rate": FEE_RATE, "funding_rate_hourly": FUNDING_HOURLY, **changes}
    with pytest.raises(InvalidInput):
        PaperBroker(path, **terms)


def test_from_settings_uses_the_paper_settings(settings: Settings, clock: Clock) -> None:
    custom = settings.model_copy(update={"paper_slippage": 0.002, "paper_fee_rate": 0.001})
    broker = PaperBroker.from_settings(custom, clock=clock)

    fill = broker.submit(open_order(size=1.0), oracle_price=100.0)
    # 100 * 1.002 = 100.2; fee 0.001 * 100.2 * 1 = 0.1002.
    assert fill.price == exact(100.2) and fill.fee == exact(0.1002)
    assert custom.paper_db.exists()


# Concurrency -------------------------------------------------------------------------------------------------------

def test_twenty_threads_submitting_one_order_make_one_fill(broker: PaperBroker, path: Path) -> None:
    start = threading.Barrier(20)
    fills: list[Fill] = []
    errors: list[BaseException] = []

    def attempt() -> None:
        start.wait()
        try:
            fills.append(broker.submit(open_order("p1"), oracle_price=100.0))
        except BaseException as exc:  # reported below, so a failure shows its cause
            errors.append(exc)

    threads = [threading.Thread(target=attempt) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert len(fills) == 20 and all(fill == fills[0] for fill in fills)
    assert len(rows(path, "fills")) == 1 and len(rows(path, "positions")) == 1


def test_twenty_threads_closing_one_position_under_different_ids_close_it_once(
        broker: PaperBroker, path: Path) -> None:
    opened = broker.position(broker.submit(open_order(), oracle_price=100.0).position_id)
    start = threading.Barrier(20)
    outcomes: list[str] = []

    def attempt(index: int) -> None:
        start.wait()
        try:
            broker.submit(exit_order(opened, f"close-{index}"), oracle_price=100.0)
            outcomes.append("filled")
        except OrderRejected:
            outcomes.append("refused")

    threads = [threading.Thread(target=attempt, args=(index,)) for index in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcomes) == ["filled"] + ["refused"] * 19
    assert len(rows(path, "fills")) == 2


def _submit_in_process(path: str, barrier: object, results: object) -> None:
    """One process with its own broker on the shared file, submitting the same order as the other."""
    broker = PaperBroker(Path(path), slippage=SLIPPAGE, fee_rate=FEE_RATE, funding_rate_hourly=FUNDING_HOURLY)
    barrier.wait()  # type: ignore[attr-defined]  # both processes submit together
    try:
        results.put(broker.submit(open_order("p1"), oracle_price=100.0).model_dump_json())  # type: ignore[attr-defined]
    except BaseException as exc:  # reported, so the parent's assertion shows it
        results.put(f"error: {exc!r}")  # type: ignore[attr-defined]


def test_two_processes_submitting_one_order_make_one_fill(path: Path) -> None:
    PaperBroker(path, slippage=SLIPPAGE, fee_rate=FEE_RATE, funding_rate_hourly=FUNDING_HOURLY)
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(2), context.Queue()
    processes = [context.Process(target=_submit_in_process, args=(str(path), barrier, results)) for _ in range(2)]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0

    assert not any(outcome.startswith("error") for outcome in outcomes), outcomes
    first, second = (Fill.model_validate_json(outcome) for outcome in outcomes)
    assert first == second
    assert len(rows(path, "fills")) == 1 and len(rows(path, "positions")) == 1
