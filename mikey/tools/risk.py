"""Risk tool: the risk engine on one position, with the market history its figures rest on.

The CLI, the HTTP API and the agent all reach the engine through ``assess_with_history`` so that one input gives one
output everywhere. What differs is only where the history comes from: the configured feed (``history_from_feed``),
an OHLCV CSV (``history_from_frame`` over ``load_ohlcv_csv``), or the API's per-market cache, built once with
``history_from_feed`` at start-up.

Conventions: market-risk figures rest on the last ``HISTORY_BARS`` daily closes (one year) of whichever history is
given; the current price is the feed's quote (for a CSV: its last close) and ``as_of`` is that quote's time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from mikey.domain import PositionInput, RiskAssessment
from mikey.errors import UnknownSymbol
from mikey.market import symbols
from mikey.market.feed import PriceFeed
from mikey.risk.assess import assess

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    import pandas as pd

    from mikey.risk.checks import RiskLimits
    from mikey.risk.liquidation import MarginTier

HISTORY_BARS = 365
"""Daily bars the market-risk figures rest on: one year, the usual VaR observation window."""


@dataclass(frozen=True)
class MarketHistory:
    """Daily closes of one market, loaded once and shared read-only between requests."""

    symbol: str
    closes: pd.Series
    """float64 closes indexed by the bars' UTC open time, oldest first, over a read-only array."""
    price: float
    """Current price: the feed's quote, or the last close of a CSV."""
    as_of: datetime
    """When ``price`` was current."""
    source: str
    """Where the bars came from, e.g. ``replay`` or ``csv:sol.csv``."""


def history_from_frame(frame: pd.DataFrame, symbol: str, *, source: str, bars: int | None = HISTORY_BARS,
                       price: float | None = None, as_of: datetime | None = None) -> MarketHistory:
    """``MarketHistory`` of an OHLCV frame (validated by ``validate_ohlcv``), keeping its last ``bars`` bars.

    ``price`` and ``as_of`` default to the last close and its bar time. Raises ``InvalidInput`` for bad bars and
    ``DataUnavailable`` for fewer than two bars (no return can be computed from one close).
    """
    import pandas as pd

    from mikey.analysis.ohlcv import validate_ohlcv

    clean = validate_ohlcv(frame, min_bars=2).frame
    if bars is not None:
        clean = clean.iloc[-bars:]
    values = clean["close"].to_numpy(dtype="float64", copy=True)
    values.flags.writeable = False  # shared by every request of the API: nobody may change it in place
    closes = pd.Series(values, index=clean.index, name="close", copy=False)
    last = clean.index[-1].to_pydatetime()
    return MarketHistory(symbol=symbol, closes=closes, price=float(values[-1]) if price is None else price,
                         as_of=last if as_of is None else as_of, source=source)


def history_from_feed(feed: PriceFeed, symbol: str, *, bars: int | None = HISTORY_BARS) -> MarketHistory:
    """``MarketHistory`` of ``symbol`` from the feed's daily candles up to its clock, priced at its latest quote."""
    from mikey.analysis.ohlcv import frame_from_candles

    market = symbols.resolve(symbol)
    quote = feed.quote(market)
    frame = frame_from_candles(feed.candles(market))
    return history_from_frame(frame, market, source=feed.name, bars=bars, price=float(quote.price), as_of=quote.as_of)


def assess_with_history(position: PositionInput, history: MarketHistory, *, limits: RiskLimits | None = None,
                        tiers: Mapping[str, Sequence[MarginTier]] | None = None) -> RiskAssessment:
    """The engine's assessment of ``position`` against ``history``; ``position.returns``, when given, replace it.

    The history's market may be any symbol when it is the user's own (``history_from_frame`` over a CSV named by
    ``symbols.resolve_own``); the feed's histories are covered markets. Raises ``UnknownSymbol`` when the position's
    market is not the history's.
    """
    market = symbols.resolve_own(position.market)
    if market != history.symbol:
        raise UnknownSymbol(position.market, [history.symbol])
    if market != position.market:
        position = position.model_copy(update={"market": market})
    closes = None if position.returns is not None else history.closes
    return assess(position, closes=closes, returns=position.returns, current_price=history.price, limits=limits,
                  tiers=tiers, as_of=history.as_of, market=market)


def assess_position(feed: PriceFeed, position: PositionInput) -> RiskAssessment:
    """Risk of ``position`` on the feed's market data: liquidation, VaR/CVaR, volatility, score, checks, alerts."""
    return assess_with_history(position, history_from_feed(feed, position.market))
