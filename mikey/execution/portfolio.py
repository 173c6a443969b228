"""The user's book, from the broker's ledger: open positions marked to the oracle, today's PnL, and the review of
closed trades against the signal MIKEY gave when each was proposed. Every number here is computed by code; the chat
graph and the CLI only render it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, time

from pydantic import BaseModel, ConfigDict

from mikey.errors import MikeyError
from mikey.execution.broker import Broker, BrokerPosition
from mikey.execution.proposals import ProposalStore
from mikey.market.feed import PriceFeed


class MarkedPosition(BaseModel):
    """An open position at the current oracle price."""

    model_config = ConfigDict(frozen=True)

    position: BrokerPosition
    mark_price: float | None
    unrealised_pnl: float | None = None
    """Price PnL of the open size at the mark, less funding accrued (fees already paid are in realised)."""
    pnl_pct_of_collateral: float | None = None


class PortfolioSnapshot(BaseModel):
    model_config = ConfigDict(frozen=True)

    user_id: str
    broker: str
    as_of: datetime
    open: list[MarkedPosition]
    realised_today: float
    unrealised: float
    notes: list[str] = []

    @property
    def total_today(self) -> float:
        return self.realised_today + self.unrealised


def snapshot(broker: Broker, feed: PriceFeed, user_id: str, *, now: datetime) -> PortfolioSnapshot:
    """Open positions marked at the feed's quotes; realised PnL since UTC midnight."""
    positions = broker.positions(user_id, include_closed=True)
    midnight = datetime.combine(now.astimezone(UTC).date(), time(0), tzinfo=UTC)
    realised_since = getattr(broker, "realised_since", None)
    if callable(realised_since):
        realised = float(realised_since(user_id, midnight))
    else:
        realised = sum(p.realised_pnl for p in positions if (p.closed_at or p.opened_at) >= midnight)
    marked, notes = [], []
    for p in (p for p in positions if p.status == "open"):
        try:
            mark = float(feed.quote(p.market).price)
        except MikeyError as exc:
            notes.append(f"{p.market}: no price to mark position {p.id} ({exc})")
            marked.append(MarkedPosition(position=p, mark_price=None))
            continue
        pnl = p.unrealised_pnl(mark) - p.unreported_funding
        marked.append(MarkedPosition(position=p, mark_price=mark, unrealised_pnl=pnl,
                                     pnl_pct_of_collateral=pnl / p.collateral * 100 if p.collateral else None))
    unrealised = sum(m.unrealised_pnl or 0.0 for m in marked)
    return PortfolioSnapshot(user_id=user_id, broker=broker.name, as_of=now, open=marked, realised_today=realised,
                             unrealised=unrealised, notes=notes)


class ReviewedTrade(BaseModel):
    model_config = ConfigDict(frozen=True)

    position: BrokerPosition
    signal: str | None
    """The code signal (BUY, SELL, HOLD) MIKEY showed when the trade was proposed, if one was."""
    with_signal: bool | None
    """Whether the trade's side followed that signal (None: no signal, or HOLD)."""
    won: bool


class TradeReview(BaseModel):
    model_config = ConfigDict(frozen=True)

    user_id: str
    trades: list[ReviewedTrade]

    @property
    def realised(self) -> float:
        return sum(t.position.realised_pnl for t in self.trades)

    @property
    def fees(self) -> float:
        return sum(t.position.fees for t in self.trades)

    @property
    def funding(self) -> float:
        return sum(t.position.funding for t in self.trades)

    @property
    def win_rate(self) -> float | None:
        return sum(t.won for t in self.trades) / len(self.trades) if self.trades else None

    def by_signal(self) -> dict[str, tuple[int, int]]:
        """(wins, trades) for trades that followed the signal, went against it, or had none."""
        out: dict[str, tuple[int, int]] = {}
        for t in self.trades:
            key = {True: "with the signal", False: "against the signal"}.get(
                t.with_signal, f"signal {t.signal}" if t.signal else "no signal")
            wins, n = out.get(key, (0, 0))
            out[key] = (wins + t.won, n + 1)
        return out


def review(broker: Broker, store: ProposalStore, user_id: str) -> TradeReview:
    """Every closed position of the user, with its outcome and the signal it was proposed under."""
    trades = []
    for p in broker.positions(user_id, include_closed=True):
        if p.status != "closed":
            continue
        signal = None
        if p.proposal_id:
            try:
                context = store.get(p.proposal_id).context
            except MikeyError:
                context = None
            signal = (json.loads(context) if context else {}).get("signal")
        followed = None
        if signal in ("BUY", "SELL"):
            followed = (signal == "BUY") == (p.side == "long")
        trades.append(ReviewedTrade(position=p, signal=signal, with_signal=followed, won=p.realised_pnl > 0))
    trades.sort(key=lambda t: t.position.closed_at or t.position.opened_at)
    return TradeReview(user_id=user_id, trades=trades)


def describe_snapshot(snap: PortfolioSnapshot) -> str:
    """The snapshot in plain words (code-written: every number is the snapshot's)."""
    if not snap.open:
        lines = [f"You have no open positions on the {snap.broker} broker."]
    else:
        lines = [f"{len(snap.open)} open position{'s' if len(snap.open) != 1 else ''} on the {snap.broker} broker:"]
        for m in snap.open:
            p = m.position
            if m.mark_price is None:
                lines.append(f"- {p.market} {p.side} {p.size:g} from {p.entry_price:,.4f}: no current price")
                continue
            lines.append(f"- {p.market} {p.side} {p.size:g} at {p.leverage:g}x, entry {p.entry_price:,.4f}, now "
                         f"{m.mark_price:,.4f}: unrealised {m.unrealised_pnl:+,.2f} USD "
                         f"({m.pnl_pct_of_collateral:+.2f}% of {p.collateral:,.2f} USD collateral) [id {p.id}]")
    lines.append(f"Today (UTC): realised {snap.realised_today:+,.2f} USD, unrealised {snap.unrealised:+,.2f} USD, "
                 f"total {snap.total_today:+,.2f} USD.")
    lines.extend(snap.notes)
    return "\n".join(lines)


def describe_review(rev: TradeReview) -> str:
    if not rev.trades:
        return "No closed trades yet."
    rate = rev.win_rate or 0.0
    lines = [f"{len(rev.trades)} closed trade{'s' if len(rev.trades) != 1 else ''}: realised {rev.realised:+,.2f} USD, "
             f"win rate {rate:.0%}, fees {rev.fees:,.2f} USD, funding {rev.funding:+,.2f} USD."]
    for key, (wins, n) in rev.by_signal().items():
        lines.append(f"- {key}: {wins} of {n} won")
    return "\n".join(lines)
