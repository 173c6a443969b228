"""Is an oracle price fit to show or act on? Rules that turn a well-formed quote into a ``PriceCheck`` verdict.

Parsing (``pyth.py``, ``switchboard.py``) only proves a payload is well formed; a well-formed price can still be
stale, too uncertain, or off from the market. Each rule here adds one plain reason, ``"<rule>: <details>"``, so a
user reads why a price was refused and ``RejectCounter`` can count refusals per rule. The rules and their thresholds
(all in ``Settings``; a value *at* a threshold passes, only beyond it fails):

- ``non-finite`` / ``too large``: NaN, infinity, or a value of 10**15 or more in price, conf or EMA;
- ``non-positive price``, ``negative conf``;
- ``stale``: published more than ``max_staleness_seconds`` before ``now``;
- ``future``: published more than ``MAX_CLOCK_SKEW`` after ``now`` (a wrong clock on one side or the other);
- ``wide conf``: conf / price above ``max_conf_ratio``;
- ``ema jump``: |price - EMA| / EMA above ``max_ema_jump``;
- ``divergence``: |price - reference| / reference above ``max_divergence`` (another source's quote);
- ``out of order``: published before the last valid quote of the same source;
- ``jump``: |price - last valid| / last valid above ``max_ema_jump``, while that last price is itself fresh. It gives
  sources without an EMA (Switchboard) the same guard against a sudden spike; once the last valid price is older
  than the staleness limit the rule lapses, so a real move is never refused for long.
"""

from __future__ import annotations

import threading
from collections import Counter
from datetime import datetime, timedelta
from decimal import Decimal, localcontext
from fractions import Fraction

from mikey.domain import PriceCheck, Quote
from mikey.errors import InvalidInput, InvalidPrice, StalePrice
from mikey.market.normalize import MAX_MAGNITUDE
from mikey.settings import Settings

MAX_CLOCK_SKEW = timedelta(seconds=5)  # publishers' and our clocks disagree by a little; more is a broken clock

STALE = "stale"
RULES = ("non-finite", "too large", "non-positive price", "negative conf", STALE, "future", "wide conf", "ema jump",
         "divergence", "out of order", "jump")


def _limit(value: float) -> Fraction:
    """A float setting as the number its text shows (0.02 -> 2/100, not 0.0200000000000000004...)."""
    return Fraction(repr(value))


def _ratio(a: Decimal, b: Decimal) -> Fraction:
    """|a - b| / b exactly: Decimal division rounds at 28 digits, which would blur a comparison at a threshold."""
    return abs(Fraction(a) - Fraction(b)) / Fraction(b)


def _num(value: Decimal) -> str:
    return f"{value:f}"  # 0.00000001, never 1E-8


def _pct(ratio: Fraction) -> str:
    """A ratio in percent with up to 10 significant digits, trailing zeros dropped: 2%, 2.00000001%, 33.33333333%."""
    with localcontext() as ctx:
        ctx.prec = 10
        percent = Decimal(ratio.numerator * 100) / Decimal(ratio.denominator)
    return f"{percent.normalize():f}%"


def _age(seconds: timedelta) -> str:
    return f"{seconds.total_seconds():g}s"


def rule_of(reason: str) -> str:
    """The rule name a reason starts with (the text before its first colon)."""
    return reason.partition(":")[0]


def check(quote: Quote, *, now: datetime, settings: Settings, reference: Quote | None = None,
          last_valid: Quote | None = None) -> PriceCheck:
    """Every rule against ``quote``; valid when no reason was added.

    Args:
        now: the checking clock (UTC); staleness is measured against it.
        settings: thresholds ``max_staleness_seconds``, ``max_conf_ratio``, ``max_ema_jump``, ``max_divergence``.
        reference: the same market from another source, itself already validated; None skips the divergence rule.
        last_valid: the last quote of this source that passed; None skips the order and jump rules.

    Raises:
        InvalidInput: ``reference`` or ``last_valid`` is for another market.
    """
    for other in (reference, last_valid):
        if other is not None and other.symbol != quote.symbol:
            raise InvalidInput(f"cannot check {quote.symbol} against a {other.symbol} quote")
    reasons: list[str] = []
    values = {"price": quote.price, "conf": quote.conf, "EMA": quote.ema_price}
    broken = [name for name, v in values.items() if v is not None and not v.is_finite()]
    huge = [name for name, v in values.items() if v is not None and v.is_finite() and abs(v) >= MAX_MAGNITUDE]
    reasons += [f"non-finite: {name} is {values[name]}" for name in broken]
    reasons += [f"too large: {name} {_num(values[name])} is not a plausible price" for name in huge]
    _check_time(quote, now, settings, reasons)
    if broken or huge:
        return _verdict(quote, now, reasons)  # no arithmetic on values that are not numbers

    price, conf, ema = quote.price, quote.conf, quote.ema_price
    if price <= 0:
        reasons.append(f"non-positive price: {_num(price)}")
    if conf is not None and conf < 0:
        reasons.append(f"negative conf: {_num(conf)}")
    if price > 0 and conf is not None and conf >= 0:
        share = Fraction(conf) / Fraction(price)
        if share > _limit(settings.max_conf_ratio):
            reasons.append(f"wide conf: conf {_num(conf)} is {_pct(share)} of the price, "
                           f"limit {_pct(_limit(settings.max_conf_ratio))}")
    if price > 0 and ema is not None:
        if ema <= 0:
            reasons.append(f"ema jump: EMA price {_num(ema)} is not positive")
        elif _ratio(price, ema) > _limit(settings.max_ema_jump):
            reasons.append(f"ema jump: price {_num(price)} is {_pct(_ratio(price, ema))} from its EMA {_num(ema)}, "
                           f"limit {_pct(_limit(settings.max_ema_jump))}")
    if price > 0 and reference is not None and reference.price > 0:
        if _ratio(price, reference.price) > _limit(settings.max_divergence):
            reasons.append(f"divergence: {_num(price)} differs {_pct(_ratio(price, reference.price))} from "
                           f"{reference.source} {_num(reference.price)}, limit {_pct(_limit(settings.max_divergence))}")
    if last_valid is not None:
        if quote.as_of < last_valid.as_of:
            reasons.append(f"out of order: published {quote.as_of.isoformat()}, before the last valid price "
                           f"({last_valid.as_of.isoformat()})")
        fresh = now - last_valid.as_of <= timedelta(seconds=settings.max_staleness_seconds)
        if price > 0 and fresh and last_valid.price > 0 and \
                _ratio(price, last_valid.price) > _limit(settings.max_ema_jump):
            reasons.append(f"jump: {_num(price)} is {_pct(_ratio(price, last_valid.price))} from the last valid "
                           f"price {_num(last_valid.price)}, limit {_pct(_limit(settings.max_ema_jump))}")
    return _verdict(quote, now, reasons)


def _check_time(quote: Quote, now: datetime, settings: Settings, reasons: list[str]) -> None:
    age = now - quote.as_of
    if age > timedelta(seconds=settings.max_staleness_seconds):
        reasons.append(f"{STALE}: published {_age(age)} ago, limit {settings.max_staleness_seconds:g}s")
    elif -age > MAX_CLOCK_SKEW:
        reasons.append(f"future: published {_age(-age)} after now, allowed clock skew {_age(MAX_CLOCK_SKEW)}")


def _verdict(quote: Quote, now: datetime, reasons: list[str]) -> PriceCheck:
    return PriceCheck(symbol=quote.symbol, source=quote.source, valid=not reasons, reasons=reasons, checked_at=now)


def require_valid(quote: Quote, *, now: datetime, settings: Settings, reference: Quote | None = None,
                  last_valid: Quote | None = None, counter: RejectCounter | None = None) -> Quote:
    """``quote`` itself when every rule passes (see ``check``); the verdict is recorded in ``counter`` if given.

    Raises:
        StalePrice: staleness is the only reason.
        InvalidPrice: any other failure; the message lists every reason.
    """
    verdict = check(quote, now=now, settings=settings, reference=reference, last_valid=last_valid)
    if counter is not None:
        counter.record(verdict)
    if verdict.valid:
        return quote
    message = f"{quote.symbol} price from {quote.source} rejected: {'; '.join(verdict.reasons)}"
    if all(rule_of(r) == STALE for r in verdict.reasons):
        raise StalePrice(message)
    raise InvalidPrice(message)


class RejectCounter:
    """Rejections per rule, shared by the ingestion pipeline's workers (thread-safe) and read for metrics."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._checked = 0

    def record(self, verdict: PriceCheck) -> None:
        """Count one verdict: each failed rule once, however many reasons it gave."""
        with self._lock:
            self._checked += 1
            self._counts.update({rule_of(r) for r in verdict.reasons})

    def counts(self) -> dict[str, int]:
        """Rejections so far, per rule name."""
        with self._lock:
            return dict(self._counts)

    @property
    def checked(self) -> int:
        """Verdicts recorded, valid or not."""
        with self._lock:
            return self._checked

    def reset(self) -> None:
        with self._lock:
            self._counts.clear()
            self._checked = 0
