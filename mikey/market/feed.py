"""The ``PriceFeed`` protocol every price source implements (replay now; Pyth and Switchboard later)."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from mikey.domain import Candle, Quote


class PriceFeed(Protocol):
    """A source of quotes and daily candles for the supported markets."""

    name: str

    def symbols(self) -> list[str]:
        """Markets this feed can serve."""
        ...

    def quote(self, symbol: str) -> Quote:
        """The latest quote at the feed's clock. Raises ``UnknownSymbol`` or ``DataUnavailable``."""
        ...

    def candles(self, symbol: str, *, start: datetime | None = None, end: datetime | None = None) -> list[Candle]:
        """Daily candles, oldest first, with ``start <= ts <= end`` (end defaults to the feed's clock)."""
        ...
