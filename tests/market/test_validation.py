"""validation: each rule refuses a price just beyond its threshold, accepts it at the threshold, and says why."""

from __future__ import annotations

import random
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest

from mikey.domain import PriceCheck, Quote
from mikey.errors import InvalidInput, InvalidPrice, StalePrice
from mikey.market.validation import MAX_CLOCK_SKEW, RULES, RejectCounter, check, require_valid, rule_of
from mikey.settings import Settings

NOW = datetime(2024, 5, 3, 14, 21, 41, tzinfo=UTC)


@pytest.fixture
def limits(tmp_path: Path) -> Settings:
    """The default thresholds: 60 s, conf 2 %, EMA 10 %, divergence 2 %."""
    s = Settings(home=tmp_path)
    assert (s.max_staleness_seconds, s.max_conf_ratio, s.max_ema_jump, s.max_divergence) == (60.0, 0.02, 0.10, 0.02)
    return s


def q(price: str = "100", *, conf: str | None = "0.5", ema: str | None = "100", age: float = 0.0,
      symbol: str = "SOL", source: str = "pyth") -> Quote:
    return Quote(symbol=symbol, price=Decimal(price), conf=None if conf is None else Decimal(conf),
                 ema_price=None if ema is None else Decimal(ema), as_of=NOW - timedelta(seconds=age), source=source)


def rules(verdict: PriceCheck) -> list[str]:
    return [rule_of(r) for r in verdict.reasons]


def test_a_sound_quote_is_valid(limits: Settings) -> None:
    verdict = check(q(), now=NOW, settings=limits)
    assert verdict == PriceCheck(symbol="SOL", source="pyth", valid=True, reasons=[], checked_at=NOW)
    assert check(q(conf=None, ema=None), now=NOW, settings=limits).valid  # sources without conf or EMA


# --- staleness and clock --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("age", "valid"), [(0, True), (59.999, True), (60, True), (60.001, False), (3600, False)])
def test_staleness_threshold(limits: Settings, age: float, valid: bool) -> None:
    verdict = check(q(age=age), now=NOW, settings=limits)
    assert verdict.valid is valid
    if not valid:
        assert rules(verdict) == ["stale"]
        assert f"published {age:g}s ago, limit 60s" in verdict.reasons[0]


@pytest.mark.parametrize(("ahead", "valid"), [(1, True), (MAX_CLOCK_SKEW.total_seconds(), True),
                                              (MAX_CLOCK_SKEW.total_seconds() + 0.001, False), (120, False)])
def test_publish_time_in_the_future_beyond_the_skew(limits: Settings, ahead: float, valid: bool) -> None:
    verdict = check(q(age=-ahead), now=NOW, settings=limits)
    assert verdict.valid is valid
    if not valid:
        assert rules(verdict) == ["future"]


def test_a_custom_staleness_limit_is_used(tmp_path: Path) -> None:
    strict = Settings(home=tmp_path, max_staleness_seconds=5)
    assert check(q(age=5), now=NOW, settings=strict).valid
    assert rules(check(q(age=5.5), now=NOW, settings=strict)) == ["stale"]


# --- value rules ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("price", ["0", "-1", "-0.00000001"])
def test_non_positive_prices_are_refused(limits: Settings, price: str) -> None:
    verdict = check(q(price, ema=None), now=NOW, settings=limits)
    assert rules(verdict) == ["non-positive price"]
    assert price in verdict.reasons[0]


def test_negative_conf_is_refused_and_not_also_called_wide(limits: Settings) -> None:
    assert check(q(conf="-0.01"), now=NOW, settings=limits).reasons == ["negative conf: -0.01"]


@pytest.mark.parametrize(("conf", "valid"), [("0", True), ("1.99999999", True), ("2", True), ("2.00000001", False),
                                             ("50", False)])
def test_conf_ratio_threshold(limits: Settings, conf: str, valid: bool) -> None:
    verdict = check(q("100", conf=conf), now=NOW, settings=limits)  # limit: 2 % of 100
    assert verdict.valid is valid
    if not valid:
        assert rules(verdict) == ["wide conf"] and "limit 2%" in verdict.reasons[0]


@pytest.mark.parametrize(("price", "valid"), [("110", True), ("90", True), ("110.00000001", False),
                                              ("89.99999999", False), ("150", False)])
def test_ema_jump_threshold_both_ways(limits: Settings, price: str, valid: bool) -> None:
    verdict = check(q(price, conf="0", ema="100"), now=NOW, settings=limits)  # limit: 10 % of the EMA
    assert verdict.valid is valid
    if not valid:
        assert rules(verdict) == ["ema jump"] and "from its EMA 100" in verdict.reasons[0]


def test_a_non_positive_ema_is_refused(limits: Settings) -> None:
    assert rules(check(q(ema="0"), now=NOW, settings=limits)) == ["ema jump"]


@pytest.mark.parametrize(("price", "valid"), [("102", True), ("98", True), ("102.00000001", False),
                                              ("97.99999999", False)])
def test_divergence_from_another_source(limits: Settings, price: str, valid: bool) -> None:
    reference = q("100", conf=None, ema=None, source="switchboard")
    verdict = check(q(price, ema=None), now=NOW, settings=limits, reference=reference)
    assert verdict.valid is valid
    if not valid:
        assert rules(verdict) == ["divergence"] and "from switchboard 100" in verdict.reasons[0]


def test_reference_and_last_valid_must_be_the_same_market(limits: Settings) -> None:
    with pytest.raises(InvalidInput, match="cannot check SOL against a BTC quote"):
        check(q(), now=NOW, settings=limits, reference=q(symbol="BTC"))
    with pytest.raises(InvalidInput):
        check(q(), now=NOW, settings=limits, last_valid=q(symbol="ETH"))


def test_non_finite_values_are_refused_without_arithmetic(limits: Settings) -> None:
    broken = Quote.model_construct(symbol="SOL", price=Decimal("NaN"), conf=Decimal("Infinity"), ema_price=None,
                                   prev_close=None, as_of=NOW, source="pyth")  # what validation alone guards against
    verdict = check(broken, now=NOW, settings=limits)
    assert verdict.reasons == ["non-finite: price is NaN", "non-finite: conf is Infinity"]


def test_absurdly_large_values_are_refused(limits: Settings) -> None:
    verdict = check(q("1E+15", conf="1", ema="1E+15"), now=NOW, settings=limits)
    assert rules(verdict) == ["too large", "too large"]


def test_every_failing_rule_is_reported(limits: Settings) -> None:
    verdict = check(q("100", conf="5", ema="80", age=120), now=NOW, settings=limits,
                    reference=q("90", source="switchboard"))
    assert rules(verdict) == ["stale", "wide conf", "ema jump", "divergence"]
    assert set(rules(verdict)) <= set(RULES)


# --- last valid price -----------------------------------------------------------------------------------------------


def test_a_quote_older_than_the_last_valid_one_is_out_of_order(limits: Settings) -> None:
    verdict = check(q(age=10), now=NOW, settings=limits, last_valid=q(age=5))
    assert rules(verdict) == ["out of order"]
    assert check(q(age=5), now=NOW, settings=limits, last_valid=q(age=5)).valid  # the same publish time is fine


def test_a_jump_from_a_fresh_last_valid_price_is_refused_but_lapses_when_it_is_stale(limits: Settings) -> None:
    spike = q("111", ema=None)
    assert rules(check(spike, now=NOW, settings=limits, last_valid=q("100", age=30))) == ["jump"]
    assert check(q("110", ema=None), now=NOW, settings=limits, last_valid=q("100", age=30)).valid  # at the limit
    assert check(spike, now=NOW, settings=limits, last_valid=q("100", age=61)).valid  # a real move is not refused


# --- properties -----------------------------------------------------------------------------------------------------


def test_ratio_rules_agree_with_exact_rational_arithmetic(tmp_path: Path) -> None:
    """Property: random prices and random thresholds; each ratio rule fires exactly when the exact ratio exceeds
    the threshold as written in settings (0.0137 means 137/10000, not the nearest float)."""
    rng = random.Random(42)
    for _ in range(400):
        limit_conf, limit_ema, limit_div = (rng.randint(1, 500) / 10000 for _ in range(3))
        settings = Settings(home=tmp_path, max_conf_ratio=limit_conf, max_ema_jump=limit_ema,
                            max_divergence=limit_div)
        price, conf, ema, ref = (Decimal(rng.randint(1, 10**8)) / 10**4 for _ in range(4))
        if rng.random() < 0.3:  # land exactly on the thresholds now and then
            conf = price * Decimal(str(limit_conf))
            ref = price / (1 + Decimal(str(limit_div))) if rng.random() < 0.5 else ref
        quote = Quote(symbol="BTC", price=price, conf=conf, ema_price=ema, as_of=NOW, source="pyth")
        verdict = check(quote, now=NOW, settings=settings, reference=q(str(ref), symbol="BTC", source="sb"))
        exact = {"wide conf": Fraction(conf) / Fraction(price) > Fraction(str(limit_conf)),
                 "ema jump": abs(Fraction(price) - Fraction(ema)) / Fraction(ema) > Fraction(str(limit_ema)),
                 "divergence": abs(Fraction(price) - Fraction(ref)) / Fraction(ref) > Fraction(str(limit_div))}
        assert set(rules(verdict)) == {rule for rule, fired in exact.items() if fired}


def test_staleness_property(limits: Settings) -> None:
    rng = random.Random(3)
    for _ in range(300):
        age = timedelta(microseconds=rng.randint(-10**7, 2 * 10**8))
        verdict = check(Quote(symbol="ETH", price=Decimal(3000), as_of=NOW - age, source="pyth"), now=NOW,
                        settings=limits)
        expected = ["stale"] if age > timedelta(seconds=60) else ["future"] if -age > MAX_CLOCK_SKEW else []
        assert rules(verdict) == expected


# --- require_valid and RejectCounter --------------------------------------------------------------------------------


def test_require_valid_returns_the_quote_itself(limits: Settings) -> None:
    quote = q()
    assert require_valid(quote, now=NOW, settings=limits) is quote


def test_require_valid_raises_stale_price_when_staleness_is_the_only_reason(limits: Settings) -> None:
    with pytest.raises(StalePrice, match=r"SOL price from pyth rejected: stale: published 61s ago, limit 60s"):
        require_valid(q(age=61), now=NOW, settings=limits)


def test_require_valid_raises_invalid_price_listing_every_reason(limits: Settings) -> None:
    with pytest.raises(InvalidPrice) as caught:
        require_valid(q(conf="-1", age=61), now=NOW, settings=limits)
    assert not isinstance(caught.value, StalePrice)
    assert str(caught.value) == "SOL price from pyth rejected: stale: published 61s ago, limit 60s; negative conf: -1"
    with pytest.raises(InvalidPrice, match="future"):  # a future time is a broken clock, not a stale price
        require_valid(q(age=-60), now=NOW, settings=limits)


def test_reject_counter_counts_rules_not_reason_texts(limits: Settings) -> None:
    counter = RejectCounter()
    require_valid(q(), now=NOW, settings=limits, counter=counter)
    for age in (61, 62, 63):
        with pytest.raises(StalePrice):
            require_valid(q(age=age), now=NOW, settings=limits, counter=counter)
    counter.record(check(q("0", ema=None, age=100), now=NOW, settings=limits))
    too_large = check(q("1E+15", conf="1", ema="1E+15"), now=NOW, settings=limits)
    counter.record(too_large)  # two reasons of one rule count once
    assert counter.counts() == {"stale": 4, "non-positive price": 1, "too large": 1}
    assert counter.checked == 6
    counter.reset()
    assert (counter.counts(), counter.checked) == ({}, 0)


def test_reject_counter_is_thread_safe(limits: Settings) -> None:
    counter = RejectCounter()
    stale = check(q(age=61, conf="50"), now=NOW, settings=limits)

    def work() -> None:
        for _ in range(2000):
            counter.record(stale)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert counter.counts() == {"stale": 16000, "wide conf": 16000}
    assert counter.checked == 16000
