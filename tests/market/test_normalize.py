"""normalize: oracle integers become exact Decimals, anything else is refused; quotes aggregate into exact candles."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from fractions import Fraction

import pytest

from mikey.domain import Quote
from mikey.errors import FeedError, InvalidInput
from mikey.market.normalize import aggregate, bucket_start, decimal_from, parse_json


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def quote(symbol: str, price: str, ts: datetime) -> Quote:
    return Quote(symbol=symbol, price=Decimal(price), as_of=ts, source="test")


# --- decimal_from ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expo", "expected"), [
    ("6140993501000", -8, "61409.93501"),  # the real Hermes BTC price
    ("3287868567", -8, "32.87868567"),  # its confidence
    (6094004700000, -8, "60940.047"),  # ints are accepted too
    ("-150", -2, "-1.5"),
    ("0", -8, "0"),
    ("42", 0, "42"),
    ("5", 2, "500"),  # a positive exponent gives a plain integer, not 5E+2
    ("000123", -1, "12.3"),
    (str(2**63 - 1), -8, "92233720368.54775807"),  # the largest i64, still exact
])
def test_decimal_from_is_exact(value: str | int, expo: int, expected: str) -> None:
    result = decimal_from(value, expo)
    assert result == Decimal(expected)
    assert str(result) == expected  # no float artefacts, no trailing zeros, no exponent notation


def test_decimal_from_matches_exact_rational_arithmetic() -> None:
    """Property: for random i64 values and Pyth-like exponents, the result is value / 10^-expo exactly."""
    rng = random.Random(20240503)
    for _ in range(2000):
        value = rng.randrange(-(10**18), 10**18)
        expo = rng.randint(-12, 0)
        if abs(Fraction(value, 10**-expo)) >= 10**15:
            continue
        result = decimal_from(str(value), expo)
        assert Fraction(result) == Fraction(value, 10**-expo)


@pytest.mark.parametrize("value", [1.5, "1.5", "", " 12", "12 ", "+12", "1e5", "12_000", "abc", "0x1f", True, None,
                                   Decimal("12"), "9" * 41])
def test_decimal_from_refuses_non_integers(value: object) -> None:
    with pytest.raises(FeedError, match="expected an integer"):
        decimal_from(value, -8)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [2**63, -(2**63), str(2**63), "-" + str(2**63), 10**30])
def test_decimal_from_refuses_values_beyond_64_bits(value: str | int) -> None:
    with pytest.raises(FeedError, match="overflows a signed 64-bit"):
        decimal_from(value, -8)


@pytest.mark.parametrize("expo", ["-8", -8.0, True, None])
def test_decimal_from_refuses_non_integer_exponents(expo: object) -> None:
    with pytest.raises(FeedError, match="integer exponent"):
        decimal_from("100", expo)  # type: ignore[arg-type]


@pytest.mark.parametrize(("value", "expo", "message"), [
    ("1", 33, "outside"), ("1", -33, "outside"),
    ("1", 15, "too large"), ("-1", 15, "too large"), ("100000000000000000", -2, "too large"),
])
def test_decimal_from_refuses_absurd_results(value: str, expo: int, message: str) -> None:
    with pytest.raises(FeedError, match=message):
        decimal_from(value, expo)


def test_decimal_from_accepts_values_just_below_the_absurd_bound() -> None:
    assert decimal_from("999999999999999", 0) == Decimal("999999999999999")
    assert decimal_from("1", -32) == Decimal("1E-32")


# --- parse_json -----------------------------------------------------------------------------------------------------


def test_parse_json_reads_numbers_exactly() -> None:
    data = parse_json(b'{"c": [61409.93501, 0.1, 3], "s": "ok"}', "src")
    assert data["c"] == [Decimal("61409.93501"), Decimal("0.1"), 3]
    assert isinstance(data["c"][1], Decimal)


@pytest.mark.parametrize("raw", [b'{"c": [1.0, NaN]}', b'{"c": Infinity}', b'{"parsed": [', b"", b"\xff\xfe{}"])
def test_parse_json_refuses_malformed_or_non_finite_bodies(raw: bytes) -> None:
    with pytest.raises(FeedError, match="src sent malformed JSON"):
        parse_json(raw, "src")


# --- aggregate ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("interval", "expected"), [
    ("1m", utc(2024, 5, 3, 14, 21)), ("1h", utc(2024, 5, 3, 14)), ("1d", utc(2024, 5, 3)),
])
def test_bucket_start_floors_to_the_utc_bar(interval: str, expected: datetime) -> None:
    assert bucket_start(utc(2024, 5, 3, 14, 21, 41, 500), interval) == expected  # type: ignore[arg-type]
    assert bucket_start(expected, interval) == expected  # type: ignore[arg-type]  # a bar's open is its own bucket


def test_bucket_start_uses_utc_whatever_the_input_zone() -> None:
    plus_two = datetime(2024, 5, 4, 1, 30, tzinfo=UTC).astimezone(timezone(timedelta(hours=2)))
    assert bucket_start(plus_two, "1d") == utc(2024, 5, 4)


def test_aggregate_1m_builds_exact_ohlc_with_open_and_close_by_time() -> None:
    t0 = utc(2024, 5, 3, 14, 21)
    quotes = [  # given out of order: open and close follow publish time, not list order
        quote("BTC", "61409.93501", t0 + timedelta(seconds=41)),
        quote("BTC", "61400.00001", t0 + timedelta(seconds=1)),
        quote("BTC", "61450.5", t0 + timedelta(seconds=20)),
        quote("BTC", "61399.99999", t0 + timedelta(seconds=30)),
        quote("BTC", "61500", t0 + timedelta(minutes=1, seconds=5)),
    ]
    first, second = aggregate(quotes, "1m")
    assert (first.symbol, first.ts) == ("BTC", t0)
    assert (first.open, first.high, first.low, first.close) == (
        Decimal("61400.00001"), Decimal("61450.5"), Decimal("61399.99999"), Decimal("61409.93501"))
    assert first.volume == 0
    assert (second.ts, second.open, second.high, second.low, second.close) == (
        t0 + timedelta(minutes=1), Decimal("61500"), Decimal("61500"), Decimal("61500"), Decimal("61500"))


def test_aggregate_1h_and_1d_bucket_across_hours_and_days() -> None:
    quotes = [quote("SOL", "145.1", utc(2024, 5, 3, 23, 59, 59)), quote("SOL", "146.2", utc(2024, 5, 3, 23, 0)),
              quote("SOL", "150", utc(2024, 5, 4, 0, 0)), quote("SOL", "149.9", utc(2024, 5, 4, 0, 30))]
    hourly = aggregate(quotes, "1h")
    assert [(c.ts, c.open, c.close) for c in hourly] == [
        (utc(2024, 5, 3, 23), Decimal("146.2"), Decimal("145.1")), (utc(2024, 5, 4, 0), Decimal("150"),
                                                                      Decimal("149.9"))]
    daily = aggregate(quotes, "1d")
    assert [(c.ts, c.open, c.high, c.low, c.close) for c in daily] == [
        (utc(2024, 5, 3), Decimal("146.2"), Decimal("146.2"), Decimal("145.1"), Decimal("145.1")),
        (utc(2024, 5, 4), Decimal("150"), Decimal("150"), Decimal("149.9"), Decimal("149.9"))]


def test_aggregate_keeps_symbols_apart() -> None:
    t = utc(2024, 5, 3, 14, 21, 5)
    candles = aggregate([quote("SOL", "145", t), quote("BTC", "61409", t), quote("SOL", "146", t + timedelta(hours=1)),
                         quote("BTC", "61000", t + timedelta(seconds=1))], "1d")
    assert [(c.symbol, c.open, c.high, c.low, c.close) for c in candles] == [
        ("BTC", Decimal("61409"), Decimal("61409"), Decimal("61000"), Decimal("61000")),
        ("SOL", Decimal("145"), Decimal("146"), Decimal("145"), Decimal("146"))]


def test_aggregate_keeps_given_order_for_equal_times() -> None:
    t = utc(2024, 5, 3, 14, 21)
    (candle,) = aggregate([quote("ETH", "3000", t), quote("ETH", "3001", t)], "1m")
    assert (candle.open, candle.close) == (Decimal("3000"), Decimal("3001"))


def test_aggregate_of_nothing_is_nothing_and_unknown_intervals_are_refused() -> None:
    assert aggregate([], "1h") == []
    with pytest.raises(InvalidInput, match="unknown candle interval '5m'"):
        aggregate([quote("SOL", "1", utc(2024, 1, 1))], "5m")  # type: ignore[arg-type]


def test_aggregate_property_every_candle_summarises_exactly_its_bucket() -> None:
    """Property: random quotes of two symbols; each candle equals a brute-force summary of its bucket."""
    rng = random.Random(7)
    start = utc(2024, 5, 3)
    quotes = [quote(rng.choice(["SOL", "BTC"]), f"{rng.randint(1, 10**9)}e-4",
                    start + timedelta(seconds=rng.randint(0, 3 * 86400))) for _ in range(500)]
    for interval, step in (("1m", timedelta(minutes=1)), ("1h", timedelta(hours=1)), ("1d", timedelta(days=1))):
        candles = aggregate(quotes, interval)  # type: ignore[arg-type]
        assert len({(c.symbol, c.ts) for c in candles}) == len(candles)
        for c in candles:
            inside = sorted((q for q in quotes if q.symbol == c.symbol and c.ts <= q.as_of < c.ts + step),
                            key=lambda q: q.as_of)
            assert inside, "a candle without quotes"
            prices = [q.price for q in inside]
            assert (c.high, c.low) == (max(prices), min(prices))
            assert c.open == inside[0].price and c.close == inside[-1].price
        assert sum(1 for q in quotes for c in candles if q.symbol == c.symbol and c.ts <= q.as_of < c.ts + step) \
            == len(quotes)
