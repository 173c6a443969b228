"""Exact numbers from what oracles send, and candles built from quotes.

Oracles publish prices as integers with a power-of-ten exponent (Pyth: ``price x 10^expo``) or as JSON numbers.
Both become ``Decimal`` without ever passing through ``float``, so a stored or displayed price equals the published
one digit for digit, and the grounding step can match it exactly. Anything that is not a plain integer, or is too big
to be a real price, is refused with ``FeedError`` instead of being rounded into something plausible.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal, localcontext
from typing import Any, Literal

from mikey.domain import Candle, Quote
from mikey.errors import FeedError, InvalidInput

Interval = Literal["1m", "1h", "1d"]
INTERVALS: dict[str, timedelta] = {"1m": timedelta(minutes=1), "1h": timedelta(hours=1), "1d": timedelta(days=1)}

MAX_RAW = 2**63  # Pyth prices are i64 on the wire; anything at or past this is corrupt
MAX_EXPO = 32  # real feeds use -12..0; a larger shift is a corrupt payload, not a price
MAX_MAGNITUDE = Decimal(10) ** 15  # a quadrillion USD per unit: no asset or confidence interval is this large
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_INTEGER = re.compile(r"-?[0-9]{1,40}")  # digits only: no '+', spaces, '_' or '1e5', which int() would accept


def decimal_from(value: str | int, expo: int) -> Decimal:
    """``value x 10^expo`` as an exact Decimal, e.g. ``decimal_from("6140993501000", -8) == Decimal("61409.93501")``.

    Trailing zeros of the fraction are dropped (the value is unchanged), so prices read as the source means them.

    Raises:
        FeedError: ``value`` is not an integer (floats, '1.5', '', booleans), ``|value| >= 2**63``, the exponent is
            not an int within +-32, or the result is absurdly large (>= 10**15).
    """
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise FeedError(f"expected an integer (as text or int), got {type(value).__name__} {value!r}")
    if isinstance(value, str) and not _INTEGER.fullmatch(value):
        raise FeedError(f"expected an integer, got {value!r}")
    if isinstance(expo, bool) or not isinstance(expo, int):
        raise FeedError(f"expected an integer exponent, got {type(expo).__name__} {expo!r}")
    raw = int(value)
    if abs(raw) >= MAX_RAW:
        raise FeedError(f"integer {raw} overflows a signed 64-bit price")
    if abs(expo) > MAX_EXPO:
        raise FeedError(f"exponent {expo} is outside +-{MAX_EXPO}")
    with localcontext() as ctx:
        ctx.prec = 64  # 19 digits shifted by at most 32 places: every step below is exact
        result = Decimal(raw).scaleb(expo)
        if abs(result) >= MAX_MAGNITUDE:
            raise FeedError(f"{raw} x 10^{expo} = {result:E} is too large to be a price")
        return result.quantize(Decimal(1)) if result == result.to_integral_value() else result.normalize()


def normalize_feed_id(feed_id: str) -> str:
    """A feed id (Pyth) or feed hash (Switchboard) as a comparison key: lower-case hex without ``0x``."""
    feed_id = feed_id.strip().lower()
    return feed_id[2:] if feed_id.startswith("0x") else feed_id


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-finite number {name}")


def parse_json(raw: str | bytes, source: str) -> Any:
    """Parse a JSON body with every non-integer number as an exact Decimal; NaN and Infinity are refused.

    Raises:
        FeedError: naming ``source`` and what is wrong with the body.
    """
    try:
        return json.loads(raw, parse_float=Decimal, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise FeedError(f"{source} sent malformed JSON ({exc})") from exc


def bucket_start(ts: datetime, interval: Interval) -> datetime:
    """The UTC open time of the ``interval`` bar that contains ``ts``."""
    if interval not in INTERVALS:
        raise InvalidInput(f"unknown candle interval {interval!r}; intervals: {', '.join(INTERVALS)}")
    if ts.tzinfo is None:
        raise InvalidInput("timestamps must be timezone-aware (UTC)")
    step = INTERVALS[interval]
    return _EPOCH + ((ts.astimezone(UTC) - _EPOCH) // step) * step


def aggregate(quotes: Iterable[Quote], interval: Interval) -> list[Candle]:
    """OHLC candles from quotes: one per symbol and UTC bar, sorted by symbol then time.

    Open is the earliest quote of the bar and close the latest (quotes with the same time keep their given order);
    high and low are the extremes. Quotes carry no traded volume, so ``volume`` is 0. Symbols never mix.
    """
    if interval not in INTERVALS:
        raise InvalidInput(f"unknown candle interval {interval!r}; intervals: {', '.join(INTERVALS)}")
    bars: dict[tuple[str, datetime], list[Decimal]] = {}
    for quote in sorted(quotes, key=lambda q: q.as_of):  # sorted() is stable
        bars.setdefault((quote.symbol, bucket_start(quote.as_of, interval)), []).append(quote.price)
    return [
        Candle(symbol=symbol, ts=ts, open=prices[0], high=max(prices), low=min(prices), close=prices[-1],
               volume=Decimal(0))
        for (symbol, ts), prices in sorted(bars.items())
    ]
