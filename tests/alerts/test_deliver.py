"""Webhook delivery to a real server on 127.0.0.1: the signature verified over the raw body, retries after a 500 or
a timeout, no retry after a 4xx, nothing unsigned sent, and the secret never logged."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest
from pydantic import SecretStr

from mikey.alerts.deliver import SIGNATURE_HEADER, WebhookSender, payload, sign, terminal_line, verify
from mikey.alerts.evaluate import Firing
from mikey.alerts.rules import AlertRule
from mikey.settings import Settings
from tests.fakes.loopback import free_port
from tests.fakes.webhook_server import WebhookServer

SECRET = "s3cret-do-not-log"
RULE = AlertRule(id="ab12cd", user_id="local", thread_id="t", market="BTC", kind="price_below", threshold=25_000,
                 text="ping me if btc drops below 25k", created_at=datetime(2026, 1, 1, tzinfo=UTC),
                 status="fired", fired_at=datetime(2026, 1, 2, tzinfo=UTC), fired_value=22_487.39)
FIRING = Firing(RULE, 22_487.39, datetime(2022, 6, 13, tzinfo=UTC), "BTC at 22,487 on 2022-06-13 00:00 UTC")


def sender(url: str, secret: str | None = SECRET, sleeps: list[float] | None = None, **kwargs) -> WebhookSender:
    record = sleeps if sleeps is not None else []
    return WebhookSender(url, SecretStr(secret) if secret is not None else None, sleep=record.append, **kwargs)


def test_delivered_signed_and_retried_after_a_500(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    sleeps: list[float] = []
    with WebhookServer(500) as server:
        hook = sender(f"{server.url}/hooks/alerts", sleeps=sleeps)
        result = hook.send(payload(RULE, FIRING), delivery_id=RULE.id)
        hook.close()
    assert (result.status, result.attempts, result.http_status) == ("delivered", 2, 200)
    assert sleeps == [0.5]
    first, second = server.received
    assert first.body == second.body and first.path == "/hooks/alerts"
    for request in server.received:
        assert request.headers[SIGNATURE_HEADER].startswith("sha256=")
        assert verify(SECRET, request.body, request.headers[SIGNATURE_HEADER])  # over the exact bytes received
        assert not verify("another secret", request.body, request.headers[SIGNATURE_HEADER])
        assert (request.headers["X-Mikey-Event"], request.headers["X-Mikey-Delivery"]) == ("alert.fired", "ab12cd")
        assert request.headers["Content-Type"] == "application/json"
    body = first.json()
    assert (body["event"], body["value"], body["as_of"]) == ("alert.fired", 22_487.39, "2022-06-13T00:00:00+00:00")
    assert body["alert"]["id"] == "ab12cd" and body["alert"]["text"] == "ping me if btc drops below 25k"
    assert body["message"] == terminal_line(RULE, FIRING)
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("mikey"))
    assert "webhook http://127.0.0.1" in ours and "answered HTTP 500 (attempt 1 of 3)" in ours
    assert "/hooks/alerts" not in ours  # MIKEY's lines name the host only (httpx's own INFO line has the URL)
    assert SECRET not in caplog.text  # at every level, from every logger


def test_a_signature_recomputed_by_hand() -> None:
    import hashlib
    import hmac

    body = b'{"a":1}'
    assert sign(SECRET, body) == "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert not verify(SECRET, body, None) and not verify(SECRET, body + b" ", sign(SECRET, body))


def test_failed_after_three_5xx_with_backoff(caplog: pytest.LogCaptureFixture) -> None:
    sleeps: list[float] = []
    with WebhookServer(500, 502, 503) as server:
        hook = sender(f"{server.url}/t0ken-in-path", sleeps=sleeps)
        result = hook.send({"x": 1}, delivery_id="id1")
        hook.close()
    assert (result.status, result.attempts, result.http_status) == ("failed", 3, 503)
    assert result.error == f"webhook {server.url} answered HTTP 503, 3 attempts"
    assert len(server.received) == 3 and sleeps == [0.5, 1.0]
    assert "t0ken-in-path" not in "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("mikey"))
    assert SECRET not in caplog.text


def test_a_4xx_is_final_and_a_429_is_retried() -> None:
    with WebhookServer(404) as server:
        hook = sender(server.url)
        result = hook.send({"x": 1}, delivery_id="id1")
        hook.close()
    assert (result.status, result.attempts, result.http_status, len(server.received)) == ("failed", 1, 404, 1)
    with WebhookServer(429) as server:
        hook = sender(server.url)
        result = hook.send({"x": 1}, delivery_id="id1")
        hook.close()
    assert (result.status, result.attempts, len(server.received)) == ("delivered", 2, 2)


def test_timeouts_are_retried() -> None:
    with WebhookServer("hang", "hang") as server:
        hook = sender(server.url, timeout=0.3)
        result = hook.send({"x": 1}, delivery_id="id1")
        hook.close()
    assert (result.status, result.attempts, len(server.received)) == ("delivered", 3, 3)
    with WebhookServer("hang", "hang", "hang") as server:
        hook = sender(server.url, timeout=0.3)
        result = hook.send({"x": 1}, delivery_id="id1")
        hook.close()
    assert (result.status, result.error) == ("failed", f"webhook {server.url} timed out, 3 attempts")


def test_a_refused_connection_fails_after_its_attempts() -> None:
    hook = sender(f"http://127.0.0.1:{free_port()}/hook")
    result = hook.send({"x": 1}, delivery_id="id1")
    hook.close()
    assert result.status == "failed" and result.attempts == 3 and "could not connect (ConnectError)" in result.error


def test_nothing_unsigned_is_sent() -> None:
    with WebhookServer() as server:
        for secret in (None, ""):
            hook = sender(server.url, secret=secret)
            result = hook.send({"x": 1}, delivery_id="id1")
            hook.close()
            assert (result.status, result.attempts) == ("failed", 0)
            assert "alert_webhook_secret is not set" in result.error
    assert server.received == []


def test_from_settings(tmp_path) -> None:
    assert WebhookSender.from_settings(Settings(home=tmp_path)) is None
    hook = WebhookSender.from_settings(Settings(home=tmp_path, alert_webhook_url="http://127.0.0.1:1/h",
                                                alert_webhook_secret=SECRET))
    assert hook is not None and hook.url == "http://127.0.0.1:1/h" and SECRET not in repr(vars(hook))
    hook.close()
