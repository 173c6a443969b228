"""The one rule every domain timestamp follows: timezone-aware, in UTC; and the clock that gives one."""

from __future__ import annotations

from datetime import UTC, datetime


def require_utc(value: datetime) -> datetime:
    """``value`` in UTC; a naive datetime is refused (its time zone would be a guess)."""
    if value.tzinfo is None:
        raise ValueError("timestamp must be timezone-aware (UTC)")
    return value.astimezone(UTC)


def optional_utc(value: datetime | None) -> datetime | None:
    """``require_utc`` for an optional timestamp: None stays None."""
    return None if value is None else require_utc(value)


def utc_now() -> datetime:
    """Now, in UTC: the default clock of the clients that stamp what they receive."""
    return datetime.now(UTC)
