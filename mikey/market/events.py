"""Where normalised market events go: an in-process fan-out queue by default, Redis Streams when configured.

Consumers (the agent, the API, a chart) subscribe and receive every event published after they subscribed. Events
are typed (``MarketEvent``) and travel as JSON over Redis, so another process or replica reads the same shapes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Literal, Protocol

from pydantic import BaseModel, Field

from mikey.domain import Candle, NewsItem, PriceCheck, Quote, SocialPost

STREAM = "mikey:market"


class QuoteEvent(BaseModel):
    kind: Literal["quote"] = "quote"
    item: Quote


class CandleEvent(BaseModel):
    kind: Literal["candle"] = "candle"
    item: Candle


class NewsEvent(BaseModel):
    kind: Literal["news"] = "news"
    item: NewsItem


class PostEvent(BaseModel):
    kind: Literal["post"] = "post"
    item: SocialPost


class RejectionEvent(BaseModel):
    kind: Literal["rejection"] = "rejection"
    item: PriceCheck


MarketEvent = Annotated[QuoteEvent | CandleEvent | NewsEvent | PostEvent | RejectionEvent,
                        Field(discriminator="kind")]


class Envelope(BaseModel):
    """An event with the time it was published."""

    event: MarketEvent
    published_at: datetime = Field(default_factory=lambda: datetime.now(UTC))


def wrap(item: Quote | Candle | NewsItem | SocialPost | PriceCheck) -> Envelope:
    """The event for a normalised item."""
    event = {Quote: QuoteEvent, Candle: CandleEvent, NewsItem: NewsEvent, SocialPost: PostEvent,
             PriceCheck: RejectionEvent}[type(item)](item=item)
    return Envelope(event=event)


class EventBus(Protocol):
    async def publish(self, envelope: Envelope) -> None: ...

    def subscribe(self) -> AsyncIterator[Envelope]: ...


class InProcessBus:
    """Fan-out over asyncio queues: each subscriber gets its own bounded queue (oldest dropped when full)."""

    def __init__(self, maxsize: int = 10_000) -> None:
        self.maxsize = maxsize
        self._queues: list[asyncio.Queue[Envelope]] = []
        self.dropped = 0

    async def publish(self, envelope: Envelope) -> None:
        for queue in list(self._queues):
            if queue.full():
                queue.get_nowait()
                self.dropped += 1
            queue.put_nowait(envelope)

    async def subscribe(self) -> AsyncIterator[Envelope]:
        queue: asyncio.Queue[Envelope] = asyncio.Queue(self.maxsize)
        self._queues.append(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            self._queues.remove(queue)


class RedisStreamBus:
    """Redis Streams: XADD with an approximate length cap; subscribers XREAD from the time they subscribed."""

    def __init__(self, url: str, stream: str = STREAM, maxlen: int = 100_000) -> None:
        import redis.asyncio as aioredis

        self.redis = aioredis.Redis.from_url(url)
        self.stream = stream
        self.maxlen = maxlen

    async def publish(self, envelope: Envelope) -> None:
        await self.redis.xadd(self.stream, {"json": envelope.model_dump_json()}, maxlen=self.maxlen, approximate=True)

    async def subscribe(self) -> AsyncIterator[Envelope]:
        last = "$"
        while True:
            found = await self.redis.xread({self.stream: last}, block=1000, count=100)
            for _, entries in found:
                for entry_id, fields in entries:
                    last = entry_id
                    yield Envelope.model_validate_json(fields[b"json"])

    async def close(self) -> None:
        await self.redis.aclose()
