"""The gates an approved order passes before it reaches a broker: each a named check with its reason.

An approval says the human wants the order; the gates say the order is still the one they approved, in the market
as it is now. They run after the proposal is claimed (one caller, once) and before the broker is called; one failed
gate fails the order with that gate's reason, and nothing executes.

- ``halt``: the kill switch (opening is blocked; closing and reducing stay allowed).
- ``oracle``: the current quote passes price validation (``mikey.market.validation``: staleness, confidence, EMA
  jump, and divergence from a second source when one is configured). A replayed market is measured against its own
  clock, not the wall clock: its prices are history by design.
- ``slippage``: the current price is within the approved order's price bound.
- ``position`` (close, reduce): the position is the user's, open, on that market and side, with at least that size.
- ``risk`` (open): a fresh assessment at the current price passes every check of the user's risk limits.
- ``limits`` (open): open positions, notional and leverage within the settings' limits.
- ``daily_loss`` (open): today's realised and unrealised loss has not reached ``daily_loss_limit``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, time
from typing import Any

from pydantic import BaseModel, ConfigDict

from mikey.domain import Quote, RiskAssessment
from mikey.errors import MikeyError, NotFound
from mikey.execution.broker import Broker, BrokerPosition
from mikey.execution.halt import HaltState, refuse_if_halted
from mikey.execution.proposals import OrderProposal, buys
from mikey.market.feed import PriceFeed
from mikey.settings import Settings


class GateCheck(BaseModel):
    """One gate's verdict."""

    model_config = ConfigDict(frozen=True)

    name: str
    passed: bool
    reason: str


class GateReport(BaseModel):
    """Every gate's verdict on one order, and the oracle price they were run at."""

    model_config = ConfigDict(frozen=True)

    checks: list[GateCheck]
    price: float | None = None
    risk: dict[str, Any] | None = None

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    @property
    def failures(self) -> list[GateCheck]:
        return [check for check in self.checks if not check.passed]

    def describe_failures(self) -> str:
        return "; ".join(f"{check.name}: {check.reason}" for check in self.failures)


def _clock_for(feed: PriceFeed, symbol: str, wall: datetime) -> datetime:
    """The clock a quote's age is measured against: a replayed market's own clock, else the wall clock."""
    now = getattr(feed, "now", None)
    if callable(now) and getattr(feed, "name", "") == "replay":
        return now(symbol)
    return wall


def oracle_check(quote: Quote, *, feed: PriceFeed, settings: Settings, now: datetime,
                 reference: Quote | None) -> GateCheck:
    from mikey.market.validation import check

    verdict = check(quote, now=_clock_for(feed, quote.symbol, now), settings=settings, reference=reference)
    if not verdict.valid:
        return GateCheck(name="oracle", passed=False, reason="; ".join(verdict.reasons))
    where = f"{quote.source}, published {quote.as_of:%Y-%m-%d %H:%M:%S} UTC"
    extra = f", within {settings.max_divergence:.2%} of {reference.source}" if reference is not None else ""
    return GateCheck(name="oracle", passed=True, reason=f"{quote.symbol} {float(quote.price):g} valid ({where}{extra})")


def slippage_check(proposal: OrderProposal, price: float) -> GateCheck:
    buy = buys(proposal.side, proposal.kind)
    within = price <= proposal.price_bound if buy else price >= proposal.price_bound
    moved = (price - proposal.price) / proposal.price
    detail = (f"price {price:g} is {moved:+.3%} from the proposal's {proposal.price:g}; the approved bound is "
              f"{proposal.price_bound:g} ({'at most' if buy else 'at least'})")
    return GateCheck(name="slippage", passed=within, reason=detail)


def position_check(proposal: OrderProposal, position: BrokerPosition | None) -> GateCheck:
    if position is None:
        return GateCheck(name="position", passed=False, reason=f"no position {proposal.position_id}")
    problems = []
    if position.user_id != proposal.user_id:
        problems.append("it belongs to another user")
    if position.status != "open":
        problems.append("it is already closed")
    if (position.market, position.side) != (proposal.market, proposal.side):
        problems.append(f"it is a {position.market} {position.side}, not a {proposal.market} {proposal.side}")
    if proposal.size > position.size * (1 + 1e-9):
        problems.append(f"it has {position.size:g} open, less than the {proposal.size:g} to close")
    if problems:
        return GateCheck(name="position", passed=False, reason=f"position {position.id}: " + "; ".join(problems))
    return GateCheck(name="position", passed=True, reason=f"position {position.id}: {position.size:g} "
                                                          f"{position.market} {position.side} open")


def assess_at(proposal: OrderProposal, feed: PriceFeed, price: float, tolerance: str | None,
              entry_price: float | None = None) -> RiskAssessment:
    """The risk engine's assessment of the proposal's position over the feed's daily closes, at ``price`` now."""
    from mikey.analysis.ohlcv import frame_from_candles
    from mikey.domain import PositionInput
    from mikey.risk.assess import assess
    from mikey.risk.checks import LIMITS_BY_TOLERANCE

    closes = frame_from_candles(feed.candles(proposal.market))["close"].iloc[-365:]
    position = PositionInput(market=proposal.market, side=proposal.side, size=proposal.size,
                             collateral=proposal.collateral, leverage=proposal.leverage, entry_price=entry_price)
    return assess(position, closes=closes, current_price=price, limits=LIMITS_BY_TOLERANCE.get(tolerance or "medium"),
                  market=proposal.market)


def risk_check(proposal: OrderProposal, feed: PriceFeed, price: float, tolerance: str | None) -> tuple[GateCheck, dict]:
    risk = assess_at(proposal, feed, price, tolerance)
    summary = {"risk_level": risk.risk_level, "risk_score": risk.risk_score,
               "liquidation_price": risk.liquidation_price, "margin_ratio": risk.margin_ratio,
               "entry_price": risk.entry_price, "var_99": risk.var_99}
    failed = [c for c in risk.checks if not c.passed]
    if failed:
        return GateCheck(name="risk", passed=False,
                         reason="; ".join(f"{c.name}: {c.detail}" for c in failed)), summary
    if risk.risk_level == "CRITICAL":
        return GateCheck(name="risk", passed=False, reason=f"risk score {risk.risk_score:.0f}/100 is CRITICAL"), summary
    return GateCheck(name="risk", passed=True, reason=f"{risk.risk_level} risk ({risk.risk_score:.0f}/100), all "
                                                      f"{len(risk.checks)} checks of the "
                                                      f"{tolerance or 'medium'} limits pass"), summary


def limits_check(proposal: OrderProposal, price: float, open_positions: list[BrokerPosition],
                 settings: Settings) -> GateCheck:
    problems = []
    if len(open_positions) >= settings.max_open_positions:
        problems.append(f"{len(open_positions)} positions open, the limit is {settings.max_open_positions}")
    notional = proposal.size * price
    if notional > settings.max_position_notional:
        problems.append(f"notional {notional:,.2f} USD is above the {settings.max_position_notional:,.2f} USD limit")
    if proposal.leverage > settings.max_leverage * (1 + 1e-12):  # a computed 2.0000000000000004x is 2x
        problems.append(f"leverage {proposal.leverage:g}x is above the {settings.max_leverage:g}x limit")
    if problems:
        return GateCheck(name="limits", passed=False, reason="; ".join(problems))
    return GateCheck(name="limits", passed=True,
                     reason=f"{len(open_positions) + 1}/{settings.max_open_positions} positions, notional "
                            f"{notional:,.2f} USD, {proposal.leverage:g}x within limits")


def todays_pnl(broker: Broker, user_id: str, prices: Callable[[str], float], now: datetime) -> float:
    """Realised PnL since UTC midnight plus the unrealised PnL of the open positions at ``prices``."""
    midnight = datetime.combine(now.astimezone(UTC).date(), time(0), tzinfo=UTC)
    realised_since = getattr(broker, "realised_since", None)
    positions = broker.positions(user_id, include_closed=True)
    if callable(realised_since):
        realised = realised_since(user_id, midnight)
    else:
        realised = sum(p.realised_pnl for p in positions if (p.closed_at or p.opened_at) >= midnight)
    unrealised = sum(p.unrealised_pnl(prices(p.market)) - p.unreported_funding for p in positions if p.status == "open")
    return realised + unrealised


def daily_loss_check(pnl: float, settings: Settings) -> GateCheck:
    if pnl <= -settings.daily_loss_limit:
        return GateCheck(name="daily_loss", passed=False,
                         reason=f"today's PnL is {pnl:,.2f} USD; the daily loss limit is "
                                f"{settings.daily_loss_limit:,.2f} USD: no new positions until tomorrow (UTC)")
    return GateCheck(name="daily_loss", passed=True,
                     reason=f"today's PnL {pnl:,.2f} USD, limit -{settings.daily_loss_limit:,.2f} USD")


def run_gates(proposal: OrderProposal, *, settings: Settings, feed: PriceFeed, broker: Broker,
              halt: HaltState | None, now: datetime, reference: PriceFeed | None = None,
              tolerance: str | None = None) -> GateReport:
    """Every gate for ``proposal``; a gate that cannot be evaluated (no data) fails with why."""
    checks: list[GateCheck] = []
    try:
        refuse_if_halted(halt, proposal.kind)
        checks.append(GateCheck(name="halt", passed=True, reason="trading is not halted" if halt is None else
                                f"halted, but a {proposal.kind} is allowed"))
    except MikeyError as exc:
        checks.append(GateCheck(name="halt", passed=False, reason=str(exc)))
    try:
        quote = feed.quote(proposal.market)
        other = reference.quote(proposal.market) if reference is not None else None
    except MikeyError as exc:
        checks.append(GateCheck(name="oracle", passed=False, reason=f"no price for {proposal.market}: {exc}"))
        return GateReport(checks=checks)
    oracle = oracle_check(quote, feed=feed, settings=settings, now=now, reference=other)
    checks.append(oracle)
    price = float(quote.price)
    if not oracle.passed:
        return GateReport(checks=checks, price=price)
    checks.append(slippage_check(proposal, price))
    risk: dict | None = None
    if proposal.kind == "open":
        try:
            risk_gate, risk = risk_check(proposal, feed, price, tolerance)
        except MikeyError as exc:
            risk_gate = GateCheck(name="risk", passed=False, reason=f"no fresh risk assessment: {exc}")
        checks.append(risk_gate)
        open_positions = broker.positions(proposal.user_id)
        checks.append(limits_check(proposal, price, open_positions, settings))

        def price_of(market: str) -> float:
            return price if market == proposal.market else float(feed.quote(market).price)

        try:
            checks.append(daily_loss_check(todays_pnl(broker, proposal.user_id, price_of, now), settings))
        except MikeyError as exc:
            checks.append(GateCheck(name="daily_loss", passed=False, reason=f"cannot compute today's PnL: {exc}"))
    else:
        assert proposal.position_id is not None
        try:
            position: BrokerPosition | None = broker.position(proposal.position_id)
        except NotFound:
            position = None
        checks.append(position_check(proposal, position))
    return GateReport(checks=checks, price=price, risk=risk)
