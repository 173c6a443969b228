"""Delivering a fired alert: one terminal line, and a signed JSON POST to ``settings.alert_webhook_url``.

The webhook's body is compact JSON (``payload``). Its signature is ``X-Mikey-Signature: sha256=<hex>``, the
HMAC-SHA256 of the raw body under ``alert_webhook_secret``; a receiver recomputes it over the bytes it received
(``verify``) before trusting the alert. Without a secret nothing is sent: an unsigned alert could be forged by anyone
who learns the URL, so the delivery is recorded as failed and says why.

A POST is retried (``ATTEMPTS`` in all, backoff doubling from ``BACKOFF_SECONDS``) on a timeout, a connection
error, a 5xx or a 429; any other answer is final. Logs and recorded errors name the webhook by scheme and host only
(a webhook URL often carries a token in its path) and never include the secret.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, SecretStr

from mikey.alerts.evaluate import Firing
from mikey.alerts.rules import AlertRule, fmt
from mikey.settings import Settings

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Mikey-Signature"
EVENT = "alert.fired"
ATTEMPTS = 3
BACKOFF_SECONDS = 0.5


class DeliveryResult(BaseModel):
    status: Literal["delivered", "failed"]
    attempts: int
    http_status: int | None = None
    error: str | None = None


def terminal_line(rule: AlertRule, firing: Firing) -> str:
    """The alert as one line: what fired, the value that fired it, and the user's words."""
    where = "below" if rule.below else "above"
    if rule.kind == "liquidation_distance_below":
        what = f"{firing.detail}: under your {fmt(rule.threshold, exact=True)}%"
    else:
        what = f"{firing.detail}: {where} your {fmt(rule.threshold, exact=True)}"
    return f"ALERT {rule.id}: {what}. You asked: \"{rule.text}\""


def payload(rule: AlertRule, firing: Firing) -> dict[str, Any]:
    """The webhook's JSON: the event, the rule as stored, the value that fired it and the terminal line."""
    return {"event": EVENT, "alert": rule.model_dump(mode="json"), "value": firing.value,
            "as_of": firing.as_of.isoformat(), "message": terminal_line(rule, firing)}


def sign(secret: str | bytes, body: bytes) -> str:
    """The signature header's value for ``body``: ``sha256=`` and the hex HMAC-SHA256 under ``secret``."""
    key = secret.encode() if isinstance(secret, str) else secret
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def verify(secret: str | bytes, body: bytes, header: str | None) -> bool:
    """Whether ``header`` is ``body``'s signature under ``secret`` (compared in constant time): a receiver's check."""
    return header is not None and hmac.compare_digest(sign(secret, body), header)


def redact(url: str) -> str:
    """``url`` as scheme and host only, for logs and recorded errors."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


class WebhookSender:
    """POSTs alerts to one webhook, signed and retried. ``transport`` and ``sleep`` are injectable for tests."""

    def __init__(self, url: str, secret: SecretStr | None, *, timeout: float = 10.0, attempts: int = ATTEMPTS,
                 backoff: float = BACKOFF_SECONDS, transport: httpx.BaseTransport | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.url = url
        self._secret = secret
        self.attempts = max(1, attempts)
        self.backoff = backoff
        self._sleep = sleep
        self._client = httpx.Client(timeout=timeout, transport=transport, follow_redirects=False)

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> WebhookSender | None:
        """The sender of ``settings.alert_webhook_url``; None when no webhook is set."""
        if not settings.alert_webhook_url:
            return None
        return cls(settings.alert_webhook_url, settings.alert_webhook_secret, timeout=settings.http_timeout, **kwargs)

    def send(self, body: dict[str, Any], *, delivery_id: str) -> DeliveryResult:
        """POST ``body`` signed; retried on timeouts, connection errors, 5xx and 429. Never raises for the
        webhook's failures: they are the result (what the store records)."""
        host = redact(self.url)
        if self._secret is None or not self._secret.get_secret_value():
            return DeliveryResult(status="failed", attempts=0, error="alert_webhook_secret is not set: MIKEY does "
                                  "not send unsigned alerts")
        raw = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
        headers = {"Content-Type": "application/json", "User-Agent": "mikey-alerts",
                   SIGNATURE_HEADER: sign(self._secret.get_secret_value(), raw), "X-Mikey-Event": EVENT,
                   "X-Mikey-Delivery": delivery_id}
        error, status = "", None
        for attempt in range(1, self.attempts + 1):
            if attempt > 1:
                self._sleep(self.backoff * 2 ** (attempt - 2))
            try:
                response = self._client.post(self.url, content=raw, headers=headers)
            except httpx.TimeoutException:
                error, status = "timed out", None
            except httpx.TransportError as exc:
                error, status = f"could not connect ({type(exc).__name__})", None
            else:
                status = response.status_code
                if response.is_success:
                    return DeliveryResult(status="delivered", attempts=attempt, http_status=status)
                error = f"answered HTTP {status}"
                if status < 500 and status != 429:
                    log.warning("alert %s: webhook %s %s; not retried", delivery_id, host, error)
                    return DeliveryResult(status="failed", attempts=attempt, http_status=status,
                                          error=f"webhook {host} {error}")
            log.warning("alert %s: webhook %s %s (attempt %d of %d)", delivery_id, host, error, attempt,
                        self.attempts)
        return DeliveryResult(status="failed", attempts=self.attempts, http_status=status,
                              error=f"webhook {host} {error}, {self.attempts} attempts")

    def close(self) -> None:
        self._client.close()
