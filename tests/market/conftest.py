"""Market fixtures: a ``store`` on each backend (SQLite, and PostgreSQL from tests/postgres.py), so every storage
behaviour is proven on both alike."""

from __future__ import annotations

import pytest

from mikey.settings import Settings


@pytest.fixture(params=["sqlite", "postgres"])
def store_settings(request: pytest.FixtureRequest, settings: Settings) -> Settings:
    """Settings for one backend: SQLite in the test's home, or a fresh PostgreSQL database."""
    if request.param == "postgres":
        return settings.model_copy(update={"database_url": request.getfixturevalue("postgres_url")})
    return settings


@pytest.fixture
def store(store_settings: Settings):
    """An open ``MarketStore`` on each backend, closed after the test."""
    from mikey.market.store import open_store

    opened = open_store(store_settings)
    yield opened
    opened.close()
