"""One check of the alert rules: evaluate, claim each firing once, deliver it, record how the delivery went.

``AlertWatcher.check`` is what ``mikey insights --every`` runs each round on its price feed. ``IngestAlerts`` is the
ingestion pipeline's observer (``market.pipeline.QuoteObserver``): after a batch of valid quotes is stored it checks
the rules of those markets on a feed view of the batch (``IngestedFeed``: the new quotes, and the daily bars the
pipeline has just rolled up). A replayed ingestion replays history, so a rule fires at the first replayed price past
its level, however old.

Claiming (``AlertStore.mark_fired``) comes before delivery: of two processes that see the same firing, the one that
loses the claim delivers nothing. A delivery that fails is recorded on the rule, which stays fired; it is not retried
by later checks (a process that dies between claim and delivery leaves the delivery 'pending').
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from mikey.alerts.deliver import WebhookSender, payload, terminal_line
from mikey.alerts.evaluate import Firing, evaluate
from mikey.alerts.rules import AlertRule
from mikey.alerts.store import AlertStore
from mikey.domain import Candle, Quote
from mikey.domain.utc import utc_now
from mikey.errors import DataUnavailable, MikeyError
from mikey.execution.broker import Broker
from mikey.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Delivered:
    """A rule this check fired: the rule as stored after delivery, what fired it, and the terminal line."""

    rule: AlertRule
    firing: Firing
    line: str


@dataclass
class CheckResult:
    fired: list[Delivered] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    """Rule id -> why it could not be evaluated (it stays active)."""
    new_errors: dict[str, str] = field(default_factory=dict)
    """Errors of rules this watcher had not reported failing since they last evaluated: what a loop prints."""


class AlertWatcher:
    """Checks the active rules (of ``user_id``, or everyone's) and delivers what fires.

    ``echo`` prints the terminal line of each alert fired; ``open_broker`` gives the broker whose positions the
    liquidation rules watch, opened on the first check that has such a rule and kept until ``close``.
    """

    def __init__(self, store: AlertStore, *, sender: WebhookSender | None = None,
                 open_broker: Callable[[], Broker] | None = None, echo: Callable[[str], None] | None = None,
                 user_id: str | None = None, clock: Callable[[], datetime] = utc_now) -> None:
        self.store = store
        self.sender = sender
        self.echo = echo
        self.user_id = user_id
        self.clock = clock
        self._open_broker = open_broker
        self._broker: Broker | None = None
        self._broker_error: str | None = None
        self._reported: set[str] = set()  # rules whose failure was reported, until they evaluate again

    @classmethod
    def from_settings(cls, settings: Settings, *, echo: Callable[[str], None] | None = None,
                      user_id: str | None = None, **kwargs: Any) -> AlertWatcher:
        """The rules of ``settings.alerts_db``, the webhook of the settings, and the broker they name."""
        from mikey.execution.broker import open_broker

        return cls(AlertStore(settings.alerts_db), sender=WebhookSender.from_settings(settings),
                   open_broker=lambda: open_broker(settings), echo=echo, user_id=user_id, **kwargs)

    def check(self, feed: Any, *, markets: Collection[str] | None = None) -> CheckResult:
        """Evaluate the active rules on ``feed`` (only those of ``markets`` when given, and liquidation rules over
        every position), then claim, deliver and record each firing."""
        rules = [r for r in self.store.list(self.user_id) if markets is None or r.market is None or r.market in markets]
        broker = self._broker_for(rules)
        evaluation = evaluate(rules, feed, broker=broker)
        out = CheckResult()
        for rule_id, why in evaluation.errors.items():
            if broker is None and self._broker_error and why == "no broker to read positions from":
                why = self._broker_error
            out.errors[rule_id] = why
            if rule_id not in self._reported:
                self._reported.add(rule_id)
                out.new_errors[rule_id] = why
        self._reported -= {r.id for r in rules} - set(evaluation.errors)
        for firing in evaluation.fired:
            delivered = self._deliver(firing)
            if delivered is not None:
                out.fired.append(delivered)
        return out

    def _deliver(self, firing: Firing) -> Delivered | None:
        claimed = self.store.mark_fired(firing.rule.id, value=firing.value, as_of=firing.as_of, now=self.clock())
        if claimed is None:
            return None  # another evaluator fired it first, or it was deleted meanwhile
        line = terminal_line(claimed, firing)
        if self.echo is not None:
            self.echo(line)
        if self.sender is None:
            stored = self.store.record_delivery(claimed.id, "terminal")
        else:
            result = self.sender.send(payload(claimed, firing), delivery_id=claimed.id)
            stored = self.store.record_delivery(claimed.id, result.status, result.error)
            if result.status == "failed" and self.echo is not None:
                self.echo(f"  (alert {claimed.id} not delivered to the webhook: {result.error})")
        return Delivered(stored, firing, line)

    def _broker_for(self, rules: Sequence[AlertRule]) -> Broker | None:
        if self._broker is not None or self._open_broker is None:
            return self._broker
        if not any(r.kind == "liquidation_distance_below" for r in rules):
            return None
        try:
            self._broker = self._open_broker()
            self._broker_error = None
        except MikeyError as exc:
            self._broker_error = f"positions cannot be read: {exc}"
        return self._broker

    def close(self) -> None:
        if self.sender is not None:
            self.sender.close()
        if self._broker is not None:
            self._broker.close()
            self._broker = None


class IngestedFeed:
    """A ``PriceFeed`` over one ingested batch: its newest quote per market (else the store's latest), and the
    store's daily bars up to that quote."""

    name = "ingest"

    def __init__(self, quotes: Sequence[Quote], market_store: Any) -> None:
        self._quotes: dict[str, Quote] = {}
        for q in quotes:
            if q.symbol not in self._quotes or q.as_of >= self._quotes[q.symbol].as_of:
                self._quotes[q.symbol] = q
        self._store = market_store

    def symbols(self) -> list[str]:
        return sorted(self._quotes)

    def quote(self, symbol: str) -> Quote:
        found = self._quotes.get(symbol) or self._store.latest_quote(symbol)
        if found is None:
            raise DataUnavailable(f"no {symbol} quote ingested yet")
        return found

    def candles(self, symbol: str, *, start: datetime | None = None, end: datetime | None = None) -> list[Candle]:
        clock = self.quote(symbol).as_of
        end = clock if end is None else min(end, clock)
        start = start or datetime(1970, 1, 1, tzinfo=UTC)
        return self._store.candles(symbol, "1d", start, end + timedelta(microseconds=1))


class IngestAlerts:
    """The ingestion pipeline's observer: checks the rules of each stored batch's markets on ``IngestedFeed``."""

    def __init__(self, watcher: AlertWatcher, market_store: Any) -> None:
        self.watcher = watcher
        self.market_store = market_store

    def on_quotes(self, quotes: Sequence[Quote]) -> None:
        feed = IngestedFeed(quotes, self.market_store)
        result = self.watcher.check(feed, markets=feed.symbols())
        for rule_id, why in result.new_errors.items():
            log.warning("alert %s could not be evaluated: %s", rule_id, why)
