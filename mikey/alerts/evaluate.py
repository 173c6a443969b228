"""Which alert rules hold now: prices and indicators from a price feed, distances to liquidation from a broker.

Every number is computed here by code: the quote's price at the feed's clock, the standard indicator snapshot
(``analysis.indicators.snapshot``) over the feed's daily bars up to that clock, and each open position's distance to
liquidation (``risk.liquidation``: the broker's own liquidation price when it keeps one, else the isolated-margin
price of MIKEY's tier tables) at the position market's quote. Values are read once per market per evaluation.

A rule that cannot be evaluated (no data for its market, no broker for a liquidation rule) is reported in
``Evaluation.errors`` with the reason and stays active; the others are still evaluated.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from mikey.alerts.rules import INDICATORS, AlertRule, fmt
from mikey.domain import IndicatorSnapshot, Quote
from mikey.errors import DataUnavailable, MikeyError
from mikey.execution.broker import Broker, BrokerPosition
from mikey.market.feed import PriceFeed


@dataclass(frozen=True)
class Firing:
    """A rule whose condition holds: the value that made it, when, and a one-line account of it."""

    rule: AlertRule
    value: float
    as_of: datetime
    detail: str
    """e.g. 'BTC at 22,487.39 on 2022-06-13', "position 1a2b (SOL long) 8.5% from liquidation at 19.93"."""


@dataclass
class Evaluation:
    fired: list[Firing] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    """Rule id -> why it could not be evaluated."""


class _Reader:
    """The feed's values, each read at most once per evaluation."""

    def __init__(self, feed: PriceFeed) -> None:
        self.feed = feed
        self._quotes: dict[str, Quote] = {}
        self._snapshots: dict[str, IndicatorSnapshot] = {}

    def quote(self, market: str) -> Quote:
        if market not in self._quotes:
            self._quotes[market] = self.feed.quote(market)
        return self._quotes[market]

    def snapshot(self, market: str) -> IndicatorSnapshot:
        if market not in self._snapshots:
            from mikey.analysis.indicators import snapshot

            self._snapshots[market] = snapshot(self.feed.candles(market))
        return self._snapshots[market]


def evaluate(rules: Iterable[AlertRule], feed: PriceFeed, *, broker: Broker | None = None) -> Evaluation:
    """The active ``rules`` that hold at ``feed``'s clock (liquidation rules: on ``broker``'s open positions)."""
    reader, out = _Reader(feed), Evaluation()
    positions: dict[str, list[BrokerPosition]] = {}
    for rule in rules:
        if rule.status != "active":
            continue
        try:
            if rule.kind == "liquidation_distance_below":
                if broker is None:
                    raise DataUnavailable("no broker to read positions from")
                if rule.user_id not in positions:
                    positions[rule.user_id] = broker.positions(rule.user_id)
                firing = _liquidation(rule, positions[rule.user_id], reader)
            elif rule.indicator is not None:
                firing = _indicator(rule, reader)
            else:
                firing = _price(rule, reader)
        except MikeyError as exc:
            out.errors[rule.id] = str(exc)
            continue
        if firing is not None:
            out.fired.append(firing)
    return out


def _price(rule: AlertRule, reader: _Reader) -> Firing | None:
    quote = reader.quote(str(rule.market))
    price = float(quote.price)
    if not rule.holds(price):
        return None
    return Firing(rule, price, quote.as_of, f"{rule.market} at {fmt(price)} on {quote.as_of:%Y-%m-%d %H:%M} UTC")


def _indicator(rule: AlertRule, reader: _Reader) -> Firing | None:
    snap = reader.snapshot(str(rule.market))
    field_name, label = INDICATORS[str(rule.indicator)]
    value = float(getattr(snap, field_name))
    if not rule.holds(value):
        return None
    return Firing(rule, value, snap.as_of, f"{rule.market} {label} at {value:,.2f} on {snap.as_of:%Y-%m-%d} "
                                           f"({snap.bars} daily bars)")


def distance_pct(position: BrokerPosition, mark: float) -> float | None:
    """How far (% of ``mark``) the price may move against ``position`` before liquidation; None when it cannot be
    liquidated. The broker's liquidation price when it keeps one, else isolated margin on MIKEY's tier tables."""
    from mikey.risk import liquidation as liq

    price = position.liquidation_price
    if price is None:  # a market without tiers takes the strictest bundled table, SOL's (as risk.assess does)
        tiers = liq.DEFAULT_TIERS.get(position.market, liq.DEFAULT_TIERS["SOL"])
        price = liq.isolated_liquidation_price(position.side, position.size, position.entry_price,
                                               position.collateral, tiers)
    return liq.distance_to_liquidation_pct(position.side, price, mark)


def _liquidation(rule: AlertRule, positions: list[BrokerPosition], reader: _Reader) -> Firing | None:
    closest: tuple[float, BrokerPosition, Quote] | None = None
    for p in positions:
        if p.status != "open" or p.size <= 0 or (rule.market is not None and p.market != rule.market):
            continue
        quote = reader.quote(p.market)
        distance = distance_pct(p, float(quote.price))
        if distance is not None and (closest is None or distance < closest[0]):
            closest = (distance, p, quote)
    if closest is None or not rule.holds(closest[0]):
        return None
    distance, p, quote = closest
    return Firing(rule, distance, quote.as_of, f"position {p.id} ({p.market} {p.side} {p.size:g} at "
                                               f"{p.leverage:g}x) is {distance:.2f}% from liquidation, {p.market} at "
                                               f"{fmt(float(quote.price))}")
