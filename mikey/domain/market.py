"""What the market engines collect and store: bars, quotes, price checks, news and social posts.

Prices are ``Decimal`` (parsed from the source's text, so a replayed close equals the published close exactly).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mikey.domain.utc import require_utc


class Candle(BaseModel):
    """One OHLCV bar; ``ts`` is the bar's open time."""

    model_config = ConfigDict(frozen=True)

    symbol: str
    ts: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal = Field(description="Volume in quote currency (USD) for the bundled data.")

    _utc = field_validator("ts")(require_utc)


class Quote(BaseModel):
    """The latest price of a market as seen by a feed at ``as_of``."""

    model_config = ConfigDict(frozen=True)

    symbol: str
    price: Decimal
    as_of: datetime = Field(description="When the source published the price (Pyth: publish_time), UTC.")
    source: str = Field(description="Where the price came from, e.g. 'replay:SOL-USD.daily.csv', 'pyth'.")
    prev_close: Decimal | None = Field(None, description="The previous bar's close, for the 1-day change.")
    conf: Decimal | None = Field(None, description="Oracle confidence interval (same unit as price), if any.")
    ema_price: Decimal | None = Field(None, description="Oracle EMA price, if the source publishes one.")

    _utc = field_validator("as_of")(require_utc)

    @property
    def change_pct(self) -> float | None:
        """Change against the previous close, in percent."""
        if self.prev_close is None or self.prev_close == 0:
            return None
        return float((self.price - self.prev_close) / self.prev_close * 100)


class PriceCheck(BaseModel):
    """The verdict of validation on one quote: valid or not, and every reason it is not."""

    model_config = ConfigDict(frozen=True)

    symbol: str
    source: str
    valid: bool
    reasons: list[str] = Field(default_factory=list, description="Empty when valid; each failed rule, in words.")
    checked_at: datetime

    _utc = field_validator("checked_at")(require_utc)


class NewsItem(BaseModel):
    """One news article from an RSS/Atom feed, tagged with the markets it mentions."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(description="Stable de-duplication key (the feed's guid, else a hash of the link).")
    source: str
    title: str
    url: str
    published_at: datetime
    summary: str = ""
    symbols: list[str] = Field(default_factory=list)

    _utc = field_validator("published_at")(require_utc)


class SocialPost(BaseModel):
    """One post from X or Discord, tagged with the markets it mentions."""

    model_config = ConfigDict(frozen=True)

    id: str
    platform: Literal["x", "discord"]
    author: str
    text: str
    created_at: datetime
    url: str | None = None
    symbols: list[str] = Field(default_factory=list)
    metrics: dict[str, int] = Field(default_factory=dict, description="Likes, reposts, replies... as the API gives.")

    _utc = field_validator("created_at")(require_utc)
