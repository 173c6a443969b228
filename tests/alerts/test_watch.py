"""A check end to end: evaluate, claim once, deliver to the terminal and a webhook on 127.0.0.1, record how it went;
racing watchers; and the ingestion pipeline checking rules on each batch of replayed quotes."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, date, datetime

from pydantic import SecretStr

from mikey.alerts.deliver import SIGNATURE_HEADER, verify
from mikey.alerts.rules import AlertRule
from mikey.alerts.store import AlertStore
from mikey.alerts.watch import AlertWatcher, IngestAlerts
from mikey.errors import ConfigError
from mikey.market.events import InProcessBus
from mikey.market.pipeline import IngestService, ReplayCollector
from mikey.market.replay import ReplayFeed
from mikey.market.store import open_store
from mikey.settings import Settings
from tests.fakes.webhook_server import WebhookServer

SECRET = "hook-secret"


def with_webhook(settings: Settings, url: str) -> Settings:
    return settings.model_copy(update={"alert_webhook_url": url, "alert_webhook_secret": SecretStr(SECRET)})


def btc_below_25k(store: AlertStore, rule_id: str = "b25", user_id: str = "local") -> AlertRule:
    return store.add(AlertRule(id=rule_id, user_id=user_id, thread_id="t", market="BTC", kind="price_below",
                               threshold=25_000, text="ping me if btc drops below 25k",
                               created_at=datetime(2026, 1, 1, tzinfo=UTC)))


def test_a_rule_fires_once_to_the_terminal(settings: Settings) -> None:
    lines: list[str] = []
    watcher = AlertWatcher.from_settings(settings, echo=lines.append)
    btc_below_25k(watcher.store)
    for day in (12, 13, 14, 15):  # below 25k from the 13th on
        watcher.check(ReplayFeed(as_of=date(2022, 6, day)))
    watcher.close()
    assert lines == ['ALERT b25: BTC at 22,487 on 2022-06-13 00:00 UTC: below your 25,000. You asked: "ping me if '
                     'btc drops below 25k"']
    stored = watcher.store.get("b25")
    assert (stored.status, stored.delivery, stored.fired_as_of) == ("fired", "terminal",
                                                                     datetime(2022, 6, 13, tzinfo=UTC))


def test_delivered_to_the_webhook_and_recorded(settings: Settings) -> None:
    with WebhookServer(500) as server:
        hooked = with_webhook(settings, f"{server.url}/alerts")
        watcher = AlertWatcher.from_settings(hooked)
        watcher.sender.backoff = 0.01
        btc_below_25k(watcher.store)
        result = watcher.check(ReplayFeed(as_of=date(2022, 6, 13)))
        watcher.close()
    (delivered,) = result.fired
    assert (delivered.rule.delivery, delivered.rule.delivery_error) == ("delivered", None)
    assert len(server.received) == 2  # a 500, then delivered
    request = server.received[-1]
    assert verify(SECRET, request.body, request.headers[SIGNATURE_HEADER])
    assert request.json()["alert"]["id"] == "b25" and request.json()["alert"]["status"] == "fired"


def test_a_failed_delivery_is_recorded_and_the_rule_stays_fired(settings: Settings) -> None:
    lines: list[str] = []
    with WebhookServer(503, 503, 503) as server:
        hooked = with_webhook(settings, server.url)
        watcher = AlertWatcher.from_settings(hooked, echo=lines.append)
        watcher.sender.backoff = 0.01
        btc_below_25k(watcher.store)
        watcher.check(ReplayFeed(as_of=date(2022, 6, 13)))
        again = watcher.check(ReplayFeed(as_of=date(2022, 6, 14)))
        watcher.close()
    stored = watcher.store.get("b25")
    assert (stored.status, stored.delivery) == ("fired", "failed")
    assert stored.delivery_error == f"webhook {server.url} answered HTTP 503, 3 attempts"
    assert again.fired == [] and len(server.received) == 3  # not fired, nor sent, again
    assert lines[1] == f"  (alert b25 not delivered to the webhook: {stored.delivery_error})"


def test_racing_watchers_deliver_once(settings: Settings) -> None:
    with WebhookServer() as server:
        hooked = with_webhook(settings, server.url)
        btc_below_25k(AlertStore(hooked.alerts_db))
        watchers = [AlertWatcher.from_settings(hooked) for _ in range(8)]
        start = threading.Barrier(len(watchers))
        fired: list[int] = []

        def run(w: AlertWatcher) -> None:
            feed = ReplayFeed(as_of=date(2022, 6, 13))
            feed.candles("BTC")  # read the file before the race, so the race is over the claim
            start.wait()
            fired.append(len(w.check(feed).fired))

        threads = [threading.Thread(target=run, args=(w,)) for w in watchers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for w in watchers:
            w.close()
    assert sorted(fired) == [0] * 7 + [1] and len(server.received) == 1


def test_only_the_users_rules_and_errors_reported_once(settings: Settings) -> None:
    store = AlertStore(settings.alerts_db)
    btc_below_25k(store, "mine")
    btc_below_25k(store, "theirs", user_id="other")
    watcher = AlertWatcher.from_settings(settings, user_id="local")
    early = ReplayFeed(as_of=date(2020, 1, 1))  # no data yet
    assert list(watcher.check(early).new_errors) == ["mine"]
    assert watcher.check(early).new_errors == {} and list(watcher.check(early).errors) == ["mine"]
    assert [d.rule.id for d in watcher.check(ReplayFeed(as_of=date(2022, 6, 13))).fired] == ["mine"]
    assert store.get("theirs").status == "active"


def test_positions_that_cannot_be_read_are_an_error(settings: Settings) -> None:
    def no_broker():
        raise ConfigError("the solana broker needs a wallet")

    store = AlertStore(settings.alerts_db)
    store.add(AlertRule(id="liq", user_id="local", thread_id="t", market=None, kind="liquidation_distance_below",
                        threshold=10, text="tell me when my liquidation distance gets under 10%",
                        created_at=datetime(2026, 1, 1, tzinfo=UTC)))
    watcher = AlertWatcher(store, open_broker=no_broker)
    result = watcher.check(ReplayFeed())
    assert result.errors == {"liq": "positions cannot be read: the solana broker needs a wallet"}


def test_the_ingestion_pipeline_fires_a_rule_on_new_quotes(settings: Settings) -> None:
    """Replayed from 2022-06-08, BTC closes below 25,000 in the sixth round (2022-06-13)."""
    lines: list[str] = []
    with WebhookServer() as server:
        hooked = with_webhook(settings, server.url)
        watcher = AlertWatcher.from_settings(hooked, echo=lines.append)
        btc_below_25k(watcher.store)
        market = open_store(hooked)
        collector = ReplayCollector(ReplayFeed(), ["BTC", "ETH"], interval=0,
                                    start=datetime(2022, 6, 8, tzinfo=UTC))
        service = IngestService([collector], market, InProcessBus(), hooked, observers=[IngestAlerts(watcher, market)])
        fired_at_round = []
        for round_no in range(1, 9):
            asyncio.run(service.run_once())
            if watcher.store.get("b25").status == "fired" and not fired_at_round:
                fired_at_round.append(round_no)
        watcher.close()
        market.close()
    assert fired_at_round == [6] and len(lines) == 1 and "2022-06-13" in lines[0]
    (request,) = server.received
    assert verify(SECRET, request.body, request.headers[SIGNATURE_HEADER])
    assert request.json()["value"] == 22487.388672


def test_ingestion_evaluates_indicators_on_the_stored_bars(settings: Settings) -> None:
    """An RSI rule on the ingested bars: not evaluated (too few bars) until the 34th bar, then it fires."""
    store = AlertStore(settings.alerts_db)
    store.add(AlertRule(id="rsi", user_id="local", thread_id="t", market="SOL", kind="indicator_above",
                        indicator="rsi", threshold=0.0, text="alert me if SOL RSI goes above 0",
                        created_at=datetime(2026, 1, 1, tzinfo=UTC)))
    watcher = AlertWatcher(store)
    market = open_store(settings)
    service = IngestService([ReplayCollector(ReplayFeed(), ["SOL"], interval=0)], market, InProcessBus(), settings,
                            observers=[IngestAlerts(watcher, market)])
    rounds = 0
    while store.get("rsi").status == "active" and rounds < 60:
        asyncio.run(service.run_once())
        rounds += 1
    market.close()
    assert rounds == 34  # MACD's warm-up (26 + 9 - 1 bars) is the indicator set's longest
