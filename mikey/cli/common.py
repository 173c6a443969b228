"""What the commands share: settings from their options, dates from their options, closing what may not have opened,
and the stored news sentiment rests on.

Light to import (typer, the error tree, the standard library): every heavy module loads inside a function.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

from mikey.errors import ConfigError, InvalidInput

if TYPE_CHECKING:
    from mikey.settings import Settings


def load_settings(**overrides: object) -> Settings:
    """The settings, with the options a user gave (``None``: not given) over the environment's.

    Raises:
        ConfigError: a setting is invalid; the message names the first one and why.
    """
    from pydantic import ValidationError

    from mikey.settings import Settings

    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "settings"
        raise ConfigError(f"invalid setting {field}: {first['msg']}") from exc


def parse_date(text: str, option: str) -> date:
    """The day ``text`` names (YYYY-MM-DD); ``InvalidInput`` names the ``option`` it came from when it names none."""
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise InvalidInput(f"{option} must be a date like 2023-08-29, got {text!r}") from exc


def utc_day(text: str, option: str) -> datetime:
    """The start (00:00 UTC) of the day ``text`` names: how bars are stamped."""
    return datetime.combine(parse_date(text, option), time(0), tzinfo=UTC)


@contextmanager
def closing(resource: Any) -> Iterator[None]:
    """Close ``resource`` on the way out, if there is one (``None``: nothing was opened)."""
    try:
        yield
    finally:
        if resource is not None:
            resource.close()


def stored_news(settings: Settings, market: str) -> list[Any]:
    """Stored news and posts of the last week, if a market store exists; sentiment rests on them."""
    from mikey.market.store import open_existing_store

    store = open_existing_store(settings)
    if store is None:
        return []
    try:
        end = datetime.now(UTC)
        start = end - timedelta(days=7)
        return [*store.news(start, end, symbol=market), *store.posts(start, end, symbol=market)]
    finally:
        store.close()

