"""Grounding: a number in an answer survives only if it is a computed fact as the writer visibly rounded it."""

from __future__ import annotations

import pytest

from mikey.agents import grounding
from mikey.agents.grounding import UNVERIFIED, ground
from mikey.analysis import indicators
from mikey.domain import Facts
from mikey.market.replay import ReplayFeed


def build_facts(symbol: str, parameters: bool = True) -> Facts:
    feed = ReplayFeed()
    return Facts(
        symbol=symbol,
        quote=feed.quote(symbol),
        indicators=indicators.snapshot(feed.candles(symbol)),
        parameters=dict(indicators.PARAMETERS) if parameters else {},
    )


@pytest.fixture(scope="module")
def sol() -> Facts:
    """SOL on 2023-08-29: price 21.780764, change +5.95%, MACD -0.7231, RSI 47.86."""
    return build_facts("SOL")


@pytest.fixture(scope="module")
def btc() -> Facts:
    """BTC on 2023-08-29: price 27727.392578."""
    return build_facts("BTC")


def assert_kept(text: str, facts: Facts) -> None:
    """Every number in ``text`` matched: the text is unchanged and nothing was removed."""
    out, report = ground(text, facts)
    assert report.removed == []
    assert out == text
    assert report.checked == report.matched > 0


@pytest.mark.parametrize("written", ["21.780764", "21.78", "21.8", "22", "$21.78"])
def test_price_rounded_as_written_matches(sol: Facts, written: str) -> None:
    """21.780764 may be written at any visible precision; the tolerance is half the last written digit."""
    assert_kept(f"SOL closed at {written} today.", sol)


@pytest.mark.parametrize("written", ["$27,727.39", "27,727", "27727.4", "27.7k", "$27.7k", "28k"])
def test_thousands_separators_and_suffixes_match(btc: Facts, written: str) -> None:
    """BTC's 27727.392578 written with separators or a k suffix is still the fact."""
    assert_kept(f"BTC trades near {written}.", btc)


@pytest.mark.parametrize("written", ["21.79", "21.77", "23.45", "99", "27.8k"])
def test_wrong_numbers_are_replaced_and_listed(sol: Facts, written: str) -> None:
    """A number off by more than its own rounding is invented; it leaves the answer and is reported."""
    out, report = ground(f"SOL closed at 21.78 and may reach {written} soon.", sol)

    assert out == f"SOL closed at 21.78 and may reach {UNVERIFIED} soon."
    assert report.removed == [written]
    assert (report.checked, report.matched) == (2, 1)
    assert report.score == 0.5


def test_percent_change_matches(sol: Facts) -> None:
    """'5.95%' and '+5.95%' are the 1-day change of +5.9525%."""
    assert_kept("Up 5.95% on the day (+5.95%), at 21.78.", sol)


def test_signed_percent_of_the_wrong_sign_is_removed(sol: Facts) -> None:
    """'-5.95%' claims a fall; the market rose, so it is not the fact."""
    out, report = ground("SOL moved -5.95% today.", sol)

    assert out == f"SOL moved {UNVERIFIED} today."
    assert report.removed == ["-5.95%"]


def test_unsigned_magnitude_matches_a_negative_fact(sol: Facts) -> None:
    """Writers say 'MACD is below zero at 0.7231'; an unsigned number is compared by magnitude."""
    assert sol.indicators is not None and sol.indicators.macd < 0
    assert_kept("MACD sits at 0.7231, under its signal -0.6479.", sol)


@pytest.mark.parametrize("written", ["+0.7231", "\u22120.7231"])
def test_signed_number_is_compared_by_value(sol: Facts, written: str) -> None:
    """'+0.7231' states a positive MACD, which contradicts -0.7231; a minus sign (also U+2212) agrees with it."""
    out, report = ground(f"MACD is {written}.", sol)

    if written.startswith("+"):
        assert out == f"MACD is {UNVERIFIED}."
        assert report.removed == ["+0.7231"]
    else:
        assert out == f"MACD is {written}."
        assert report.removed == []


@pytest.mark.parametrize(
    "text",
    [
        "RSI(14) is 47.86.",
        "MACD(12,26,9) is bearish.",
        "Bollinger(20,2) bands hold.",
        "The 20-day band is wide.",
        "ATR over 14 periods is 1.0962.",
    ],
)
def test_indicator_periods_match_parameters(sol: Facts, text: str) -> None:
    """Periods written as parameters ('RSI(14)', '20-day', '14 periods') are facts too."""
    assert_kept(text, sol)


def test_periods_without_parameters_are_unverified() -> None:
    """The periods match because of ``parameters``, not by accident: without them 14 is unverified."""
    facts = build_facts("SOL", parameters=False)

    out, report = ground("RSI(14) is 47.86.", facts)

    assert out == f"RSI({UNVERIFIED}) is 47.86."
    assert report.removed == ["14"]


@pytest.mark.parametrize("written", ["14%", "12", "+9%", "$20"])
def test_parameters_outside_parameter_context_are_unverified(sol: Facts, written: str) -> None:
    """A parameter value does not verify an invented 'up 14%': parameters count only where they read as periods."""
    out, report = ground(f"SOL may gain {written} this week.", sol)

    assert out == f"SOL may gain {UNVERIFIED} this week."
    assert report.removed == [written]


@pytest.mark.parametrize("written", ["14%", "$12", "+9%"])
def test_parenthesised_amounts_are_not_parameters(sol: Facts, written: str) -> None:
    """'(14%)' is a percentage and '($12)' a price, not a period: an opening bracket must not make them parameters."""
    out, report = ground(f"SOL may gain ({written}) this week.", sol)

    assert out == f"SOL may gain ({UNVERIFIED}) this week."
    assert report.removed == [written]


def test_as_of_date_matches_and_other_dates_do_not(sol: Facts) -> None:
    """Only the facts' as-of date may appear; a date is not split into the numbers 2023, 08 and 29."""
    out, report = ground("On 2023-08-29 SOL closed at 21.78; by 2024-01-01 who knows.", sol)

    assert out == f"On 2023-08-29 SOL closed at 21.78; by {UNVERIFIED} who knows."
    assert report.removed == ["2024-01-01"]
    assert (report.checked, report.matched) == (3, 2)


@pytest.mark.parametrize("text", ["Written by SmolLM2 on an L2 chain.", "GPT4o and ETH2 agree: SOL looks neutral."])
def test_words_with_digits_are_not_numbers(sol: Facts, text: str) -> None:
    """Model names and tickers containing digits are words; grounding must leave them alone."""
    out, report = ground(text, sol)

    assert out == text
    assert report.checked == 0
    assert report.removed == []


def test_score_is_one_without_numbers(sol: Facts) -> None:
    """A narrative with no numbers cannot contradict the facts."""
    out, report = ground("SOL looks neutral, with momentum fading.", sol)

    assert out == "SOL looks neutral, with momentum fading."
    assert report.checked == 0
    assert report.score == 1.0


def test_fact_values_are_the_facts_card_only(sol: Facts) -> None:
    """Numbers allowed anywhere are the facts card's values; parameters are not among them."""
    values = grounding.fact_values(sol)

    assert values == [f.value for f in sol.numbers()]
    assert len(values) == 10
    assert values[0] == 21.780764
    assert grounding.fact_dates(sol) == {sol.quote.as_of.date()}
