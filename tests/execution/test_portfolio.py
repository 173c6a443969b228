"""The user's book from the paper ledger, on a clock the test moves: open positions marked to the replayed market,
today's realised PnL, and the review of closed trades by the signal each was proposed under; every number worked out
by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mikey.execution.broker import Fill, OrderRequest
from mikey.execution.paper import PaperBroker
from mikey.execution.portfolio import describe_review, describe_snapshot, review, snapshot
from mikey.execution.proposals import ProposalStore
from mikey.market.replay import ReplayFeed

SLIPPAGE = 0.001
FEE_RATE = 0.0005
FUNDING_HOURLY = 0.0001
SOL = 21.780764  # the replayed market's last closes
BTC = 27727.392578


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def exact(value: float) -> object:
    """Equal up to float rounding: the hand-worked values below are exact decimals."""
    return pytest.approx(value, rel=1e-9, abs=1e-12)


def paper(tmp_path: Path, clock: Clock) -> PaperBroker:
    return PaperBroker(tmp_path / "paper.sqlite", slippage=SLIPPAGE, fee_rate=FEE_RATE,
                       funding_rate_hourly=FUNDING_HOURLY, clock=clock)


def open_at(broker: PaperBroker, client_id: str, market: str, side: str, size: float, oracle: float, *,
            user_id: str = "alice", collateral: float = 40.0) -> Fill:
    order = OrderRequest(client_id=client_id, user_id=user_id, market=market, side=side, size=size, leverage=5.0,  # type: ignore[arg-type]
                         collateral=collateral, price_bound=1e12 if side == "long" else 1e-12)
    return broker.submit(order, oracle_price=oracle)


def close_at(broker: PaperBroker, opened: Fill, oracle: float, *, user_id: str = "alice") -> Fill:
    position = broker.position(opened.position_id)
    order = OrderRequest(client_id=f"{opened.client_id}-close", user_id=user_id, kind="close", market=position.market,
                         side=position.side, size=position.size, leverage=position.leverage,
                         collateral=position.collateral, position_id=position.id,
                         price_bound=1e-12 if position.side == "long" else 1e12)
    return broker.submit(order, oracle_price=oracle)


# The snapshot ------------------------------------------------------------------------------------------------------

def test_a_snapshot_marks_open_positions_at_the_feed_and_counts_todays_realised(tmp_path: Path) -> None:
    clock = Clock(datetime(2026, 12, 2, 22, 0, tzinfo=UTC))
    broker = paper(tmp_path, clock)
    # Yesterday: a SOL long bought at 10 * 1.001 = 10.01 and sold at 12 * 0.999 = 11.988. Not today's.
    close_at(broker, open_at(broker, "yesterday", "SOL", "long", 1.0, 10.0), 12.0)
    clock.advance(hours=12)  # 2026-12-03 10:00
    sol = open_at(broker, "sol", "SOL", "long", 10.0, 20.0)  # entry 20.02, fee 0.0005 * 200.2 = 0.1001
    btc = open_at(broker, "btc", "BTC", "short", 0.01, 28000.0)  # entry 27972, fee 0.0005 * 279.72 = 0.13986
    doge = open_at(broker, "doge", "DOGE", "long", 100.0, 0.1)  # entry 0.1001, fee 0.0005 * 10.01 = 0.005005
    open_at(broker, "bob", "BTC", "long", 0.01, 27000.0, user_id="bob")
    clock.advance(hours=2)  # 12:00: two hours of funding on each open position

    snap = snapshot(broker, ReplayFeed(), "alice", now=clock.now)

    assert (snap.user_id, snap.broker, snap.as_of) == ("alice", "paper", clock.now)
    assert snap.realised_today == exact(-0.1001 - 0.13986 - 0.005005)  # today's fills: three opening fees
    marked = {m.position.id: m for m in snap.open}
    assert set(marked) == {sol.position_id, btc.position_id, doge.position_id}
    # SOL long: (21.780764 - 20.02) * 10 = 17.60764, less funding paid 0.0001 * 200.2 * 2 = 0.04004.
    assert marked[sol.position_id].mark_price == SOL
    assert marked[sol.position_id].unrealised_pnl == exact(17.5676)
    assert marked[sol.position_id].pnl_pct_of_collateral == exact(17.5676 / 40 * 100)
    # BTC short: (27972 - 27727.392578) * 0.01 = 2.44607422, plus funding received 0.0001 * 279.72 * 2 = 0.055944.
    assert marked[btc.position_id].mark_price == BTC
    assert marked[btc.position_id].unrealised_pnl == exact(2.50201822)
    # DOGE: no market to mark it at; said so, and left out of the total.
    assert marked[doge.position_id].mark_price is None and marked[doge.position_id].unrealised_pnl is None
    assert len(snap.notes) == 1 and snap.notes[0].startswith(f"DOGE: no price to mark position {doge.position_id}")
    assert snap.unrealised == exact(17.5676 + 2.50201822)
    assert snap.total_today == exact(17.5676 + 2.50201822 - 0.244965)

    text = describe_snapshot(snap)
    assert text.startswith("3 open positions on the paper broker:")
    assert "unrealised +17.57 USD (+43.92% of 40.00 USD collateral)" in text
    assert "Today (UTC): realised -0.24 USD, unrealised +20.07 USD, total +19.82 USD." in text


def test_a_snapshot_of_an_empty_book(tmp_path: Path) -> None:
    clock = Clock(datetime(2026, 12, 3, 12, 0, tzinfo=UTC))

    snap = snapshot(paper(tmp_path, clock), ReplayFeed(), "alice", now=clock.now)

    assert (snap.open, snap.realised_today, snap.unrealised, snap.notes) == ([], 0.0, 0.0, [])
    assert describe_snapshot(snap).startswith("You have no open positions on the paper broker.")


# The review --------------------------------------------------------------------------------------------------------

def test_the_review_scores_closed_trades_by_the_signal_they_were_proposed_under(tmp_path: Path) -> None:
    clock = Clock(datetime(2026, 12, 3, 8, 0, tzinfo=UTC))
    broker = paper(tmp_path, clock)
    store = ProposalStore(tmp_path / "execution.sqlite", clock=clock)

    def trade(signal: str | None, side: str, size: float, entry: float, exit_: float, *, hours: float = 0.0,
              stored: bool = True) -> str:
        """Open under a proposal made with ``signal`` (or under an id the store never saw), close ``hours`` later."""
        if stored:
            proposal = store.propose(user_id="alice", thread_id="t1", market="SOL", side=side, size=size,  # type: ignore[arg-type]
                                     leverage=5.0, collateral=40.0, price=entry, max_slippage=0.01,
                                     context=None if signal is None else {"signal": signal, "tolerance": None})
            client_id = proposal.id
        else:
            client_id = "placed-by-hand"
        opened = open_at(broker, client_id, "SOL", side, size, entry)
        clock.advance(hours=hours)
        close_at(broker, opened, exit_)
        clock.advance(minutes=1)
        return opened.position_id

    won_with = trade("BUY", "long", 2.0, 100.0, 110.0)
    # Entry 100.1, exit 109.89: 9.79 * 2 = 19.58; fees 0.1001 + 0.10989 = 0.20999. Realised 19.37001.
    lost_against = trade("SELL", "long", 1.0, 100.0, 90.0)
    # Entry 100.1, exit 89.91: -10.19; fees 0.05005 + 0.044955 = 0.095005. Realised -10.285005.
    won_hold = trade("HOLD", "short", 4.0, 50.0, 45.0)
    # Entry 49.95, exit 45.045: 4.905 * 4 = 19.62; fees 0.0999 + 0.09009 = 0.18999. Realised 19.43001.
    lost_unsignalled = trade(None, "short", 1.0, 50.0, 50.0, hours=10)
    # Entry 49.95, exit 50.05: -0.1; fees 0.024975 + 0.025025 = 0.05; funding received 0.0001 * 49.95 * 10 =
    # 0.04995. Realised -0.10005.
    won_with_short = trade("SELL", "short", 1.0, 50.0, 40.0)
    # Entry 49.95, exit 40.04: 9.91; fees 0.024975 + 0.02002 = 0.044995. Realised 9.865005.
    lost_by_hand = trade("BUY", "long", 1.0, 100.0, 100.0, stored=False)
    # Entry 100.1, exit 99.9: -0.2; fees 0.05005 + 0.04995 = 0.1. Realised -0.3.
    open_at(broker, "still-open", "SOL", "long", 1.0, 100.0)  # open: not reviewed
    close_at(broker, open_at(broker, "bobs", "SOL", "long", 1.0, 100.0, user_id="bob"), 200.0, user_id="bob")

    rev = review(broker, store, "alice")

    assert rev.user_id == "alice"
    assert [t.position.id for t in rev.trades] == [won_with, lost_against, won_hold, lost_unsignalled,
                                                    won_with_short, lost_by_hand]  # in the order they closed
    assert [(t.signal, t.with_signal, t.won) for t in rev.trades] == [
        ("BUY", True, True), ("SELL", False, False), ("HOLD", None, True), (None, None, False),
        ("SELL", True, True), (None, None, False)]
    assert [t.position.realised_pnl for t in rev.trades] == [
        exact(19.37001), exact(-10.285005), exact(19.43001), exact(-0.10005), exact(9.865005), exact(-0.3)]
    assert rev.realised == exact(37.97997)
    assert rev.fees == exact(0.20999 + 0.095005 + 0.18999 + 0.05 + 0.044995 + 0.1)  # 0.68998
    assert rev.funding == exact(-0.04995)
    assert rev.win_rate == 0.5
    assert rev.by_signal() == {"with the signal": (2, 2), "against the signal": (0, 1), "signal HOLD": (1, 1),
                               "no signal": (0, 2)}

    assert describe_review(rev).splitlines() == [
        "6 closed trades: realised +37.98 USD, win rate 50%, fees 0.69 USD, funding -0.05 USD.",
        "- with the signal: 2 of 2 won",
        "- against the signal: 0 of 1 won",
        "- signal HOLD: 1 of 1 won",
        "- no signal: 0 of 2 won"]


def test_a_review_with_no_closed_trades(tmp_path: Path) -> None:
    clock = Clock(datetime(2026, 12, 3, 8, 0, tzinfo=UTC))
    broker = paper(tmp_path, clock)
    open_at(broker, "open", "SOL", "long", 1.0, 100.0)

    rev = review(broker, ProposalStore(tmp_path / "execution.sqlite", clock=clock), "alice")

    assert (rev.trades, rev.win_rate, rev.by_signal()) == ([], None, {})
    assert describe_review(rev) == "No closed trades yet."
