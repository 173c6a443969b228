"""The price feed the settings ask for, built at the composition root: replay (default) or Pyth."""

from __future__ import annotations

from mikey.market.feed import PriceFeed
from mikey.settings import Settings


def open_feed(settings: Settings) -> PriceFeed:
    """``ReplayFeed`` over the bundled (or configured) history, or ``PythFeed`` when ``feed`` is ``pyth``."""
    if settings.feed == "pyth":
        from mikey.market.pyth import PythFeed

        return PythFeed.from_settings(settings)
    from mikey.market.replay import ReplayFeed

    return ReplayFeed(settings.replay_dir, settings.as_of)
