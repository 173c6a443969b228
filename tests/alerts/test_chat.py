"""An alert set from chat fires once on replayed prices, reaches a webhook server on 127.0.0.1 (signature verified),
and is listed by `mikey alerts list`; the replies to requests that lack something, or hold already."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from pydantic import SecretStr

from mikey.alerts.chat import set_from_message
from mikey.alerts.deliver import SIGNATURE_HEADER, verify
from mikey.alerts.store import AlertStore
from mikey.alerts.watch import AlertWatcher
from mikey.market.replay import ReplayFeed
from mikey.settings import Settings
from tests.conftest import run_mikey
from tests.fakes.webhook_server import WebhookServer

SECRET = "chat-hook-secret"


def replay_days(watcher: AlertWatcher, first: date, days: int) -> list[date]:
    """Check the rules once per replayed day; the days on which something fired."""
    fired = []
    for offset in range(days):
        day = date.fromordinal(first.toordinal() + offset)
        if watcher.check(ReplayFeed(as_of=day)).fired:
            fired.append(day)
    return fired


def listed(home: Path, user: str) -> list[dict]:
    done = run_mikey("alerts", "list", "--json", env={"MIKEY_HOME": str(home), "MIKEY_USER_ID": user})
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


@pytest.mark.slow
def test_set_from_chat_fires_once_reaches_the_webhook_and_is_listed(settings: Settings, isolated_env: Path) -> None:
    reply = set_from_message(settings, ReplayFeed(as_of=date(2022, 6, 10)), "ana", "thread-7",
                             "ping me if btc drops below 25k", ["BTC"])
    (rule,) = AlertStore(settings.alerts_db).list("ana")
    assert reply == (f"Alert set: I'll tell you when BTC trades below 25,000 (now 29,084). ID {rule.id} \u2014 "
                     "`mikey alerts list`.")
    with WebhookServer() as server:
        hooked = settings.model_copy(update={"alert_webhook_url": f"{server.url}/in",
                                             "alert_webhook_secret": SecretStr(SECRET)})
        watcher = AlertWatcher.from_settings(hooked, user_id="ana")
        fired_on = replay_days(watcher, date(2022, 6, 10), 6)  # 29,084 26,762 ... 22,487 (13th) 22,207 ...
        watcher.close()
    assert fired_on == [date(2022, 6, 13)]
    (request,) = server.received
    assert verify(SECRET, request.body, request.headers[SIGNATURE_HEADER])
    body = request.json()
    assert (body["alert"]["id"], body["alert"]["user_id"], body["alert"]["thread_id"]) == (rule.id, "ana", "thread-7")
    assert body["value"] == 22487.388672 and body["as_of"] == "2022-06-13T00:00:00+00:00"
    (shown,) = listed(isolated_env, "ana")
    assert (shown["id"], shown["status"], shown["delivery"], shown["text"]) == \
        (rule.id, "fired", "delivered", "ping me if btc drops below 25k")
    assert listed(isolated_env, "local") == []  # another user's alert is not theirs to see


def test_replies_to_what_cannot_be_set_yet(settings: Settings) -> None:
    feed = ReplayFeed(as_of=date(2022, 6, 10))
    assert set_from_message(settings, feed, "u", "t", "ping me if btc moves", []) == \
        "At what price of BTC should I tell you, e.g. 'ping me if BTC drops below 25k'?"
    assert set_from_message(settings, feed, "u", "t", "ping me if it drops below 20", ["BTC", "SOL"]) == \
        "Which market should I watch: BTC or SOL?"
    assert set_from_message(settings, feed, "u", "t", "how are you?", []).startswith("I couldn't read an alert")
    assert AlertStore(settings.alerts_db).list("u") == []


def test_an_alert_that_already_holds_says_so(settings: Settings) -> None:
    reply = set_from_message(settings, ReplayFeed(as_of=date(2022, 6, 13)), "u", "t", "ping me if btc drops below 25k",
                             [])
    assert "(now 22,487)" in reply and reply.endswith("It already holds, so it fires at the next check.")
    rsi = set_from_message(settings, ReplayFeed(as_of=date(2022, 6, 13)), "u", "t", "alert me if btc is oversold", [])
    assert rsi.startswith("Alert set: I'll tell you when BTC's RSI(14) goes below 30 (now ")


@pytest.mark.slow
def test_through_the_chat_graph(settings: Settings, isolated_env: Path) -> None:
    """The chat graph (rules, offline writer) routes an alert request to set_from_message; the alert it sets fires
    once when ETH crosses 2,000 on 2023-04-13 and is listed."""
    from mikey.agents.chat import build_chat_graph, open_checkpointer, run_turn
    from mikey.agents.state import ChatContext
    from mikey.router.chat_model import RouterChatModel

    quiet = settings.model_copy(update={"understand_with_model": False})
    context = ChatContext(settings=quiet, feed=ReplayFeed(as_of=date(2023, 4, 12)),
                          chat_model=RouterChatModel(quiet), group="offline")
    with open_checkpointer(quiet) as checkpointer:
        answer = run_turn(build_chat_graph(checkpointer), context, "notify me when ETH crosses 2,000", "thread-eth")
    (rule,) = AlertStore(settings.alerts_db).list(settings.user_id)
    assert answer.intent.kind == "alert" and (rule.kind, rule.threshold, rule.thread_id) == \
        ("price_above", 2000.0, "thread-eth")
    assert answer.text.startswith("Alert set: I'll tell you when ETH trades above 2,000 (now 1,920.68). ID ")
    with WebhookServer() as server:
        hooked = settings.model_copy(update={"alert_webhook_url": server.url,
                                             "alert_webhook_secret": SecretStr(SECRET)})
        watcher = AlertWatcher.from_settings(hooked)
        assert replay_days(watcher, date(2023, 4, 11), 5) == [date(2023, 4, 13)]
        watcher.close()
    assert len(server.received) == 1 and verify(SECRET, server.received[0].body,
                                                server.received[0].headers[SIGNATURE_HEADER])
    (shown,) = listed(isolated_env, settings.user_id)
    assert (shown["id"], shown["status"], shown["fired_as_of"]) == (rule.id, "fired", "2023-04-13T00:00:00Z")
    assert datetime.fromisoformat(shown["fired_at"]) > datetime(2023, 4, 14, tzinfo=UTC)  # the wall clock's time
