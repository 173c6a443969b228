"""The collectors the settings ask for, built at the composition root (``mikey data ingest``, the API)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mikey.market.news import RssCollector
from mikey.market.pipeline import Collector, Item, ReplayCollector, ThreadCollector, replay_resume
from mikey.market.replay import ReplayFeed
from mikey.settings import Settings


def build_collectors(settings: Settings, symbols: Sequence[str],
                     store: Any | None = None) -> tuple[list[Collector], list[Any]]:
    """Collectors for prices (replay or Pyth), news (when feeds are configured) and social (when tokens are set).

    With the market ``store`` ingestion writes to, the replay resumes after the bars it already holds.
    Returns the collectors and the clients to close when ingestion ends.
    """
    interval = settings.ingest_interval_seconds
    collectors: list[Collector] = []
    closing: list[Any] = []
    if settings.feed == "pyth":
        from mikey.market.pyth import HermesClient

        hermes = HermesClient(settings.pyth_url, settings.pyth_api_key, timeout=settings.http_timeout)
        closing.append(hermes)
        collectors.append(ThreadCollector("pyth", lambda: hermes.latest(symbols), interval))
        hashes = {s: h for s, h in settings.switchboard_feed_hashes.items() if s in symbols}
        if hashes:  # a second oracle: quotes checked against each other for divergence
            from mikey.market.switchboard import SwitchboardClient

            switchboard = SwitchboardClient(settings.switchboard_url, hashes, timeout=settings.http_timeout)
            closing.append(switchboard)
            collectors.append(ThreadCollector("switchboard", lambda: switchboard.latest(list(hashes)), interval))
    else:
        feed = ReplayFeed(settings.replay_dir, settings.as_of)
        resume = replay_resume(store, feed, symbols) if store is not None else None
        collectors.append(ReplayCollector(feed, symbols, interval, resume=resume))
    if settings.news_feeds:
        rss = RssCollector(settings.news_feeds, timeout=settings.http_timeout)
        closing.append(rss)
        collectors.append(ThreadCollector("news", lambda: _news(rss), interval * 12))
    from mikey.market.social import DiscordClient, XClient, social_collectors

    for client in social_collectors(settings):
        closing.append(client)
        if isinstance(client, XClient):
            query = " OR ".join(f"${s}" for s in symbols)
            collectors.append(ThreadCollector("x", lambda c=client, q=query: c.recent_search(q), interval * 12))
        elif isinstance(client, DiscordClient):
            for channel in settings.discord_channel_ids:
                collectors.append(ThreadCollector(f"discord:{channel}",
                                                  lambda c=client, ch=channel: c.channel_messages(ch), interval * 12))
    return collectors, closing


def _news(rss: RssCollector) -> list[Item]:
    batch = rss.collect()
    if batch.errors and not batch.items:
        raise batch.errors[0]  # every feed failed: the collector failed, and backs off
    return list(batch.items)
