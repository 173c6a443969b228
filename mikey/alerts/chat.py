"""The reply to an alert request, from chat or ``mikey alerts add``: the rule stored and said back, or the question
that completes it.

Every number in the reply is the rule's threshold or a value read from the feed (the price, or the indicator, now),
so a grounding check finds each of them.
"""

from __future__ import annotations

from collections.abc import Sequence

from mikey.alerts.rules import INDICATORS, AlertRule, Clarification, CurrentValue, fmt, rule_from_text
from mikey.alerts.store import AlertStore
from mikey.domain import IndicatorSnapshot
from mikey.market.feed import PriceFeed
from mikey.settings import Settings

EXAMPLES = ("'ping me if BTC drops below 25k', 'alert me if SOL RSI goes above 70' or 'tell me when my liquidation "
            "distance gets under 10%'")


def current_values(feed: PriceFeed) -> CurrentValue:
    """A ``rules.CurrentValue`` over ``feed``: the quote's price, or an indicator of the standard snapshot."""
    snapshots: dict[str, IndicatorSnapshot] = {}

    def value(market: str, indicator: str | None) -> float:
        if indicator is None:
            return float(feed.quote(market).price)
        if market not in snapshots:
            from mikey.analysis.indicators import snapshot

            snapshots[market] = snapshot(feed.candles(market))
        return float(getattr(snapshots[market], INDICATORS[indicator][0]))

    return value


def parse_request(feed: PriceFeed, user_id: str, thread_id: str, message: str,
                  markets: Sequence[str] = ()) -> AlertRule | Clarification | None:
    """``rules.rule_from_text`` with the feed's current values."""
    return rule_from_text(message, markets, current=current_values(feed), user_id=user_id, thread_id=thread_id)


def set_from_message(settings: Settings, feed: PriceFeed, user_id: str, thread_id: str, message: str,
                     markets: Sequence[str] = ()) -> str:
    """Store the alert ``message`` asks for and say so, with its id; or ask what it lacks.

    Args:
        markets: the markets the conversation is about, used when the message names none.

    Raises:
        DataUnavailable: the feed has no data for the market (a level without a direction needs the price now).
    """
    parsed = parse_request(feed, user_id, thread_id, message, markets)
    if parsed is None:
        return f"I couldn't read an alert in that. Say, for example, {EXAMPLES}."
    if isinstance(parsed, Clarification):
        return parsed.question
    rule = AlertStore(settings.alerts_db).add(parsed)
    return confirmation(rule)


def confirmation(rule: AlertRule) -> str:
    """'Alert set: I'll tell you when BTC trades below 25,000 (now 27,727). ID ab12cd — `mikey alerts list`.'"""
    now = "" if rule.reference is None else f" (now {fmt(rule.reference)})"
    text = f"Alert set: I'll tell you when {rule.describe()}{now}. ID {rule.id} \u2014 `mikey alerts list`."
    if rule.reference is not None and rule.holds(rule.reference):
        text += " It already holds, so it fires at the next check."
    return text
