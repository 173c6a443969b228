"""`mikey alerts add | list | delete | check` and `mikey insights --every` through the real CLI, each command a fresh
process over the same MIKEY_HOME, with a webhook server on 127.0.0.1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mikey.alerts.deliver import SIGNATURE_HEADER, verify
from tests.conftest import run_mikey
from tests.fakes.webhook_server import WebhookServer

SECRET = "cli-hook-secret"


def env_of(home: Path, **extra: str) -> dict[str, str]:
    return {"MIKEY_HOME": str(home), "MIKEY_MEMORY_ENABLED": "false", **extra}


def lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


@pytest.mark.slow
def test_add_list_delete(isolated_env: Path) -> None:
    env = env_of(isolated_env)
    added = run_mikey("alerts", "add", "ping me if btc drops below 25k", "--as-of", "2022-06-10", env=env)
    assert added.returncode == 0, added.stderr
    rule_id = added.stdout.split(" ID ")[1].split()[0]
    assert added.stdout.strip() == (f"Alert set: I'll tell you when BTC trades below 25,000 (now 29,084). ID {rule_id} "
                                    "\u2014 `mikey alerts list`.")
    second = run_mikey("alerts", "add", "alert me if SOL RSI goes above 70", "--json", env=env)
    rsi = json.loads(second.stdout)
    assert (rsi["kind"], rsi["market"], rsi["indicator"], rsi["threshold"], rsi["thread_id"]) == \
        ("indicator_above", "SOL", "rsi", 70.0, "cli")

    listed = lines(run_mikey("alerts", "list", "--json", env=env).stdout)
    assert [(r["id"], r["status"]) for r in listed] == [(rule_id, "active"), (rsi["id"], "active")]
    assert [r["text"] for r in listed] == ["ping me if btc drops below 25k", "alert me if SOL RSI goes above 70"]
    text = run_mikey("alerts", "list", env=env).stdout
    assert f"{rule_id}  [active]  BTC trades below 25,000" in text

    deleted = run_mikey("alerts", "delete", rule_id, "--json", env=env)
    assert deleted.returncode == 0 and json.loads(deleted.stdout)["status"] == "deleted"
    assert [r["id"] for r in lines(run_mikey("alerts", "list", "--json", env=env).stdout)] == [rsi["id"]]
    every = lines(run_mikey("alerts", "list", "--all", "--json", env=env).stdout)
    assert [(r["id"], r["status"]) for r in every] == [(rule_id, "deleted"), (rsi["id"], "active")]

    again = run_mikey("alerts", "delete", rule_id, env=env)
    assert again.returncode == 1 and again.stderr.startswith(f"error: no alert '{rule_id}' of yours to delete")


@pytest.mark.slow
def test_add_asks_instead_of_guessing(isolated_env: Path) -> None:
    env = env_of(isolated_env)
    vague = run_mikey("alerts", "add", "ping me if btc moves", env=env)
    assert vague.returncode == 1
    assert vague.stderr.strip() == ("error: At what price of BTC should I tell you, e.g. 'ping me if BTC drops below "
                                    "25k'?")
    none = run_mikey("alerts", "add", "what does RSI mean?", env=env)
    assert none.returncode == 1 and "no alert in that" in none.stderr
    assert run_mikey("alerts", "list", env=env).stdout.startswith("no alerts")


@pytest.mark.slow
def test_insights_every_fires_an_alert_once(isolated_env: Path) -> None:
    """Three rounds of `mikey insights --every` at 2022-06-13 (BTC at 22,487): the alert fires in the first, once,
    to stderr (stdout stays one Insight per line) and to the webhook."""
    with WebhookServer() as server:
        env = env_of(isolated_env, MIKEY_ALERT_WEBHOOK_URL=f"{server.url}/mikey",
                     MIKEY_ALERT_WEBHOOK_SECRET=SECRET, MIKEY_WATCHLIST='["BTC"]')
        added = run_mikey("alerts", "add", "ping me if btc drops below 25k", "--as-of", "2022-06-10", "--json",
                          env=env)
        rule_id = json.loads(added.stdout)["id"]
        done = run_mikey("insights", "--json", "-m", "offline", "--as-of", "2022-06-13", "--every", "0.05",
                         "--rounds", "3", env=env)
    assert done.returncode == 0, done.stderr
    assert [i["symbol"] for i in lines(done.stdout)] == ["BTC"] * 3
    alerts = [line for line in done.stderr.splitlines() if line.startswith("ALERT")]
    assert alerts == [f'ALERT {rule_id}: BTC at 22,487 on 2022-06-13 00:00 UTC: below your 25,000. You asked: "ping '
                      'me if btc drops below 25k"']
    (request,) = server.received
    assert request.path == "/mikey" and verify(SECRET, request.body, request.headers[SIGNATURE_HEADER])
    (fired,) = lines(run_mikey("alerts", "list", "--json", env=env).stdout)
    assert (fired["id"], fired["status"], fired["delivery"], fired["fired_as_of"]) == \
        (rule_id, "fired", "delivered", "2022-06-13T00:00:00Z")
    assert SECRET not in done.stdout + done.stderr


@pytest.mark.slow
def test_rounds_needs_every(isolated_env: Path) -> None:
    done = run_mikey("insights", "--rounds", "2", env=env_of(isolated_env))
    assert done.returncode == 1 and "--rounds counts the rounds of --every" in done.stderr
