"""An alert rule (``AlertRule``) and the parser that reads one from a user's words (``rule_from_text``).

Kinds, and when each fires (thresholds are inclusive):

- ``price_above`` / ``price_below``: the market's quote at or past the level;
- ``indicator_above`` / ``indicator_below``: an indicator of the standard set (``INDICATORS``: RSI(14), MACD and its
  signal and histogram, ATR(14), the Bollinger bands) on the daily bars up to the feed's clock;
- ``liquidation_distance_below``: an open position of the user (in ``market``, or any when it is None) within
  ``threshold`` percent of its liquidation price.

The parser reads the request ("ping me", "notify me when", "set an alert"), the market (aliases and typos:
"etherum"), the indicator, the level with its unit words ("25k", "$1,500", "2.5m", "10%") and the direction ("drops
below", "goes above", "gets under"). A level without a direction ("crosses 2,000", "hits 30k") is above when it is
above the current value, else below, so it needs the current value. A request it cannot complete is a
``Clarification`` with the question to ask, never a guess.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mikey.domain.utc import optional_utc, require_utc, utc_now
from mikey.market import symbols

AlertKind = Literal["price_above", "price_below", "indicator_above", "indicator_below", "liquidation_distance_below"]
AlertStatus = Literal["active", "fired", "deleted"]
DeliveryStatus = Literal["pending", "terminal", "delivered", "failed"]
Indicator = Literal["rsi", "macd", "macd_signal", "macd_hist", "atr", "bb_upper", "bb_middle", "bb_lower"]

INDICATORS: dict[str, tuple[str, str]] = {
    "rsi": ("rsi_14", "RSI(14)"), "macd": ("macd", "MACD(12,26,9)"), "macd_signal": ("macd_signal", "MACD signal"),
    "macd_hist": ("macd_hist", "MACD histogram"), "atr": ("atr_14", "ATR(14)"),
    "bb_upper": ("bb_upper", "upper Bollinger band"), "bb_middle": ("bb_middle", "middle Bollinger band"),
    "bb_lower": ("bb_lower", "lower Bollinger band"),
}
"""Indicator name -> (``IndicatorSnapshot`` field, how it is written)."""

CurrentValue = Callable[[str, str | None], float]
"""(market, indicator or None for the price) -> its value now."""


class AlertRule(BaseModel):
    """One alert: what to watch, the level, whose it is, and what happened to it."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    id: str = Field(min_length=1, description="Short id the user types: `mikey alerts delete ID`.")
    user_id: str = Field(min_length=1)
    thread_id: str = Field(min_length=1, description="The chat thread it was set in ('cli' from the command line).")
    market: str | None = Field(description="Symbol; None only for a liquidation rule over every position.")
    kind: AlertKind
    indicator: Indicator | None = Field(None, description="For indicator kinds only.")
    threshold: float = Field(description="Price (USD), indicator value, or distance to liquidation in percent.")
    text: str = Field(description="The user's words, as they set it.")
    created_at: datetime
    status: AlertStatus = "active"
    reference: float | None = Field(None, description="The watched value when the rule was set, if known.")
    fired_at: datetime | None = None
    fired_value: float | None = Field(None, description="The value that fired it.")
    fired_as_of: datetime | None = Field(None, description="The time of the data that fired it (the quote's).")
    delivery: DeliveryStatus | None = Field(
        None, description="pending (claimed, not yet delivered), terminal (no webhook set), delivered, failed.")
    delivery_error: str | None = None

    _utc = field_validator("created_at")(require_utc)
    _utc_optional = field_validator("fired_at", "fired_as_of")(optional_utc)

    @model_validator(mode="after")
    def _consistent(self) -> AlertRule:
        indicator_kind = self.kind.startswith("indicator_")
        if indicator_kind != (self.indicator is not None):
            raise ValueError("an indicator rule names its indicator, and only an indicator rule does")
        if self.market is None and self.kind != "liquidation_distance_below":
            raise ValueError(f"a {self.kind} rule needs a market")
        if self.kind.startswith("price_") and self.threshold <= 0:
            raise ValueError("a price level must be above zero")
        if self.kind == "liquidation_distance_below" and not 0 < self.threshold < 100:
            raise ValueError("a distance to liquidation is a percentage between 0 and 100")
        if self.status == "fired" and self.fired_at is None:
            raise ValueError("a fired rule has its firing time")
        return self

    @property
    def below(self) -> bool:
        return self.kind.endswith("_below")

    def holds(self, value: float) -> bool:
        """Whether ``value`` of the watched quantity fires the rule (at or past the threshold)."""
        return value <= self.threshold if self.below else value >= self.threshold

    def subject(self) -> str:
        """What is watched, in words: 'BTC', "SOL's RSI(14)", 'your SOL position'."""
        if self.kind == "liquidation_distance_below":
            return f"your {self.market} position" if self.market else "any position of yours"
        if self.indicator is not None:
            return f"{self.market}'s {INDICATORS[self.indicator][1]}"
        return str(self.market)

    def describe(self) -> str:
        """The condition in words: 'BTC trades below 25,000'."""
        where = "below" if self.below else "above"
        if self.kind == "liquidation_distance_below":
            return f"{self.subject()} comes within {fmt(self.threshold, exact=True)}% of its liquidation price"
        if self.indicator is not None:
            return f"{self.subject()} goes {where} {fmt(self.threshold, exact=True)}"
        return f"{self.market} trades {where} {fmt(self.threshold, exact=True)}"


class Clarification(BaseModel):
    """An alert request the parser could not complete: what is missing, and the question that asks for it."""

    model_config = ConfigDict(frozen=True)

    missing: Literal["level", "market", "direction", "condition"]
    question: str


def fmt(value: float, *, exact: bool = False) -> str:
    """A level as people write it: '25,000', '1,729.73', '0.5'. ``exact`` keeps every decimal the value has (a
    user's threshold); otherwise prices of 10,000 or more are whole ('27,727') and the rest keep two decimals."""
    if exact or abs(value) < 1:
        text = f"{value:,.8f}".rstrip("0").rstrip(".") if abs(value) >= 1 else f"{value:.6g}"
        return text
    if abs(value) >= 10_000:
        return f"{value:,.0f}"
    return f"{value:,.2f}".removesuffix(".00")


def new_id() -> str:
    """A short random id (6 hex digits): easy to type, and the store retries the rare collision."""
    return secrets.token_hex(3)


# -- the parser -----------------------------------------------------------------------------------------------------
_STRONG = re.compile(
    r"\b(?:ping|notify|alert|warn|buzz|wake)\s+(?:me|us)\b|\bheads[- ]?up\b"
    r"|\b(?:set|create|add|make|put|place|setup)\s+(?:up\s+)?(?:me\s+)?(?:an?\s+)?(?:new\s+)?(?:price\s+|rsi\s+)?"
    r"alert\b|\b(?:ping|notify|alert|warn)\s+(?:if|when|whenever|once|as\s+soon\s+as|should|at|for|on)\b"
    r"|^\s*(?:price\s+)?alert\b", re.I)
_WEAK = re.compile(r"\b(?:tell|message|text|e-?mail|dm|remind|inform|signal)\s+(?:me|us)\b|\blet\s+(?:me|us)\s+know\b",
                   re.I)
_CONDITIONAL = re.compile(r"\b(?:if|when|whenever|once|as\s+soon\s+as|should|in\s+case)\b", re.I)

_NOISE = re.compile(  # numbers that are parameters or durations, not levels
    r"\(\s*\d+(?:\s*,\s*\d+)*\s*\)|(?:(?<=rsi)|(?<=atr))[-_ ]?14\b(?=\D*\d)"
    r"|\b\d+\s?-?\s?(?:days?|d|h|hrs?|hours?|mins?|minutes?|weeks?|w|periods?|bars?)\b", re.I)
_NUMBER = re.compile(
    r"(?<![\w.,$])(?P<neg>[-\u2212]\s?)?(?P<cur>\$\s?)?(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"
    r"(?:\s?(?P<unit>k|m|mn|mm|bn|b|thousand|million|billion|grand)(?![a-z]))?(?P<pct>\s?(?:%|percent\b|pct\b))?"
    r"(?:\s?(?:usd[ct]?|dollars?|bucks)\b)?(?![\w]|\.\d)", re.I)
_UNITS = {"k": 1e3, "thousand": 1e3, "grand": 1e3, "m": 1e6, "mn": 1e6, "mm": 1e6, "million": 1e6, "b": 1e9,
          "bn": 1e9, "billion": 1e9}

_BELOW_PREP = re.compile(r"\b(?:below|under|beneath|less\s+than|lower\s+than|sub)\b|<", re.I)
_ABOVE_PREP = re.compile(r"\b(?:above|over|more\s+than|higher\s+than|greater\s+than|beyond)\b|>", re.I)
_BELOW_VERB = re.compile(
    r"\b(?:drops?|dropp(?:ed|ing)|dips?|dipp(?:ed|ing)|falls?|falling|fell|sinks?|sinking|declines?|declining|"
    r"goes\s+down|go\s+down|gets?\s+down|crash(?:es|ing)?|dumps?|dumping|tanks?|tanking|plunges?|plunging|slides?|"
    r"sliding|slips?|slipping|loses|breaks?\s+down|turns?\s+negative|goes\s+negative)\b", re.I)
_ABOVE_VERB = re.compile(
    r"\b(?:rises?|rising|rose|climbs?|climbing|pumps?|pumping|moons?|mooning|goes\s+up|go\s+up|gets?\s+up|jumps?|"
    r"jumping|surges?|surging|rall(?:y|ies|ying)|spikes?|spiking|soars?|soaring|breaks?\s+out|tops|exceeds?|"
    r"exceeding|surpass(?:es)?|recovers?|reclaims?|turns?\s+positive|goes\s+positive)\b", re.I)

_INDICATOR_WORDS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("macd_hist", re.compile(r"\bmacd\s+hist(?:ogram)?\b", re.I)),
    ("macd_signal", re.compile(r"\bmacd\s+signal(?:\s+line)?\b", re.I)),
    ("bb_upper", re.compile(r"\bupper\s+(?:bollinger\s+)?band\b|\bbollinger\s+upper\b", re.I)),
    ("bb_lower", re.compile(r"\blower\s+(?:bollinger\s+)?band\b|\bbollinger\s+lower\b", re.I)),
    ("bb_middle", re.compile(r"\bmiddle\s+(?:bollinger\s+)?band\b|\bbollinger\s+middle\b", re.I)),
    ("rsi", re.compile(r"\brsi\b|\brelative\s+strength\b", re.I)),
    ("macd", re.compile(r"\bmacd\b", re.I)),
    ("atr", re.compile(r"\batr\b|\baverage\s+true\s+range\b", re.I)),
)
_MACD_CROSS = re.compile(r"\bmacd\b.*\bcross(?:es|ing)?\s+(?P<dir>above|over|below|under)\s+(?:the\s+|its\s+)?"
                         r"signal\b", re.I)
_RSI_ZONE = re.compile(r"\b(?P<zone>overbought|oversold)\b", re.I)
_LIQUIDATION = re.compile(r"\bliquidat\w*|\bliq\b", re.I)
_WORD = re.compile(r"\$?[a-z][a-z0-9]*(?:-perp)?", re.I)
_FUZZY_NAMES = ("bitcoin", "ethereum", "solana")
_RSI_LINES = {"overbought": 70.0, "oversold": 30.0}  # the analysis engine's lines (analysis.signals)
_FAR = 50.0
"""A price level this many times above or below the current price is asked about ('btc below 25': 25k?)."""


@dataclass(frozen=True)
class _Number:
    value: float
    pct: bool
    start: int
    end: int


def is_alert_request(message: str) -> bool:
    """Whether ``message`` asks to be told about something later ("ping me if", "notify me when", "set an alert")."""
    return bool(_STRONG.search(message) or (_WEAK.search(message) and _CONDITIONAL.search(message)))


def rule_from_text(message: str, markets: Sequence[str] = (), *, current: CurrentValue | None = None,
                   user_id: str = "local", thread_id: str = "cli", now: datetime | None = None,
                   ) -> AlertRule | Clarification | None:
    """The alert rule ``message`` asks for; a ``Clarification`` when it asks for one without saying enough; None
    when it asks for no alert at all.

    Args:
        message: the user's words.
        markets: markets the conversation is about (the chat's own reading, or the last turn's), used when the
            message names none.
        current: the value of a market's price (indicator None) or indicator now. Needed for a level without a
            direction ("crosses 2,000") or a move in percent ("drops 10%"); also recorded as the rule's reference.
            Errors it raises (no data for the market) propagate.
        user_id, thread_id: whose rule, and where it was set.
        now: the creation time (default: the wall clock).
    """
    text = " ".join(message.split())
    if not is_alert_request(text):
        return None
    named = _markets_in(text)
    clean = _NOISE.sub(lambda m: " " * len(m.group()), text)
    numbers = _numbers_in(clean)
    base = {"user_id": user_id, "thread_id": thread_id, "text": message.strip(), "created_at": now or utc_now()}
    if _LIQUIDATION.search(clean):  # "my liquidation distance": every position, unless the message names a market
        if len(named) > 1:
            return Clarification(missing="market", question=f"Which position should I watch: {_join(named)}? (Or "
                                 "name none to watch them all.)")
        return _liquidation_rule(clean, numbers, named[0] if named else None, base)
    if len(named) > 1:
        return Clarification(missing="market", question=f"One alert covers one market: which of {_join(named)} "
                             "should I watch? (Set another alert for the other.)")
    market = named[0] if named else None
    if market is None:
        given = list(dict.fromkeys(m for m in map(symbols.normalize, markets) if m is not None))
        if len(given) > 1:
            return Clarification(missing="market", question=f"Which market should I watch: {_join(given)}?")
        market = given[0] if given else None
    if market is None:
        return Clarification(missing="market", question="Which market should I watch, e.g. 'ping me if BTC drops "
                             "below 25k'? I cover " + _join(list(symbols.SUPPORTED)) + ".")
    indicator = next((name for name, pattern in _INDICATOR_WORDS if pattern.search(clean)), None)
    if indicator is None and _RSI_ZONE.search(clean):
        indicator = "rsi"  # "when sol is oversold": RSI's lines
    if indicator is not None:
        return _indicator_rule(clean, numbers, market, indicator, current, base)
    return _price_rule(clean, numbers, market, current, base)


def _liquidation_rule(text: str, numbers: list[_Number], market: str | None, base: dict) -> AlertRule | Clarification:
    above = _ABOVE_PREP.search(text)
    below = _BELOW_PREP.search(text) or _BELOW_VERB.search(text) or re.search(r"\b(?:within|close|near)\b", text, re.I)
    if above and not below:
        return Clarification(missing="direction", question="I can tell you when a position comes close to "
                             "liquidation: under what distance, e.g. 'when my liquidation distance gets under 10%'?")
    level = next((n for n in numbers if n.pct), None)
    if level is None and len(numbers) == 1 and 0 < numbers[0].value < 100:
        level = numbers[0]  # "under 10": a distance is a percentage
    if level is None:
        return Clarification(missing="level", question="How close to liquidation should I tell you, e.g. 'when my "
                             "liquidation distance gets under 10%'?")
    if not 0 < level.value < 100:
        return Clarification(missing="level", question="A distance to liquidation is a percentage between 0 and "
                             f"100; {fmt(level.value, exact=True)}% is not one. What distance should I watch?")
    return AlertRule(id=new_id(), market=market, kind="liquidation_distance_below", threshold=level.value, **base)


def _indicator_rule(text: str, numbers: list[_Number], market: str, indicator: str, current: CurrentValue | None,
                    base: dict) -> AlertRule | Clarification:
    if cross := _MACD_CROSS.search(text):  # "MACD crosses above its signal": the histogram crosses zero
        kind = "indicator_below" if cross["dir"].lower() in ("below", "under") else "indicator_above"
        return _made(kind, market, "macd_hist", 0.0, current, base)
    levels = [n for n in numbers if not n.pct]
    if not levels and indicator == "rsi" and (zone := _RSI_ZONE.search(text)):
        word = zone["zone"].lower()
        kind = "indicator_above" if word == "overbought" else "indicator_below"
        return _made(kind, market, "rsi", _RSI_LINES[word], current, base)
    if not levels and indicator in ("macd", "macd_hist") and re.search(r"\b(?:positive|negative)\b", text, re.I):
        return _made("indicator_below" if re.search(r"negative", text, re.I) else "indicator_above", market,
                     indicator, 0.0, current, base)
    label = INDICATORS[indicator][1]
    if not levels:
        return Clarification(missing="level", question=f"At what level of {market}'s {label} should I tell you, "
                             f"e.g. 'alert me if {market} RSI goes above 70'?")
    mention = dict(_INDICATOR_WORDS)[indicator].search(text)
    after = [n for n in levels if mention is not None and n.start > mention.start()]
    level = (after or levels)[0 if after else -1]
    if indicator == "rsi" and not 0 <= level.value <= 100:
        return Clarification(missing="level", question=f"RSI runs from 0 to 100; {fmt(level.value, exact=True)} "
                             "is outside it. What level should I watch, e.g. 70?")
    if indicator in ("atr", "bb_upper", "bb_middle", "bb_lower") and level.value <= 0:
        return Clarification(missing="level", question=f"{label} is never below zero: what level should I watch?")
    direction = _direction(text)
    if isinstance(direction, Clarification):
        return direction
    if direction is None:
        if current is None:
            return _ask_direction(f"{market}'s {label}", level.value)
        now_value = float(current(market, indicator))
        if now_value == level.value:
            return _ask_direction(f"{market}'s {label}", level.value)
        direction = "above" if level.value > now_value else "below"
    return _made(f"indicator_{direction}", market, indicator, level.value, current, base)


def _price_rule(text: str, numbers: list[_Number], market: str, current: CurrentValue | None,
                base: dict) -> AlertRule | Clarification:
    direction = _direction(text)
    if isinstance(direction, Clarification):
        return direction
    levels = [n for n in numbers if not n.pct]
    moves = [n for n in numbers if n.pct]
    now_value = float(current(market, None)) if current is not None else None
    if not levels and moves:  # "drops 10%": a level relative to the price now
        if direction is None:
            return Clarification(missing="direction", question=f"Should I tell you when {market} rises "
                                 f"{fmt(moves[0].value, exact=True)}% or when it falls that much?")
        if now_value is None:
            return Clarification(missing="level", question=f"At what price of {market} should I tell you?")
        share = moves[0].value / 100
        if direction == "below" and share >= 1:
            return Clarification(missing="level", question="A price cannot fall 100% or more: what level should I "
                                 "watch?")
        level = now_value * (1 - share if direction == "below" else 1 + share)
        level = round(level, 2) if level >= 1 else float(f"{level:.6g}")
        return _made(f"price_{direction}", market, None, level, current, base, now_value=now_value)
    if not levels:
        return Clarification(missing="level", question=f"At what price of {market} should I tell you, e.g. 'ping me "
                             f"if {market} drops below 25k'?")
    where = _direction_position(text)
    after = [n for n in levels if where is not None and n.start > where]
    level = after[0] if after else levels[-1]
    if level.value <= 0:
        return Clarification(missing="level", question=f"A price level must be above zero: what price of {market} "
                             "should I watch?")
    if now_value is not None and not now_value / _FAR <= level.value <= now_value * _FAR:
        given = fmt(level.value, exact=True)
        guess = f" Did you mean {given}k?" if now_value / _FAR <= level.value * 1000 <= now_value * _FAR else ""
        return Clarification(missing="level", question=f"{market} trades at {fmt(now_value)}, so {given} looks far "
                             f"off.{guess} Please write the level with its unit, e.g. '25k' or '$1,500'.")
    if direction is None:
        if now_value is None or now_value == level.value:
            return _ask_direction(market, level.value)
        direction = "above" if level.value > now_value else "below"
    return _made(f"price_{direction}", market, None, level.value, current, base, now_value=now_value)


def _made(kind: str, market: str, indicator: str | None, threshold: float, current: CurrentValue | None, base: dict,
          *, now_value: float | None = None) -> AlertRule:
    if now_value is None and current is not None:
        now_value = float(current(market, indicator))
    return AlertRule(id=new_id(), market=market, kind=kind, indicator=indicator, threshold=threshold,
                     reference=now_value, **base)


def _ask_direction(subject: str, level: float) -> Clarification:
    return Clarification(missing="direction", question=f"Should I tell you when {subject} goes above "
                         f"{fmt(level, exact=True)}, or when it goes below?")


def _direction(text: str) -> Literal["above", "below"] | Clarification | None:
    """'above' or 'below' from the words (prepositions before verbs); None when they give no direction."""
    for above, below in ((_ABOVE_PREP, _BELOW_PREP), (_ABOVE_VERB, _BELOW_VERB)):
        up, down = above.search(text), below.search(text)
        if up and down:
            return Clarification(missing="direction", question="One alert watches one level in one direction: do "
                                 "you want to hear when it goes above, or below? (Set a second alert for the other.)")
        if up or down:
            return "above" if up else "below"
    return None


def _direction_position(text: str) -> int | None:
    found = [m.end() for p in (_ABOVE_PREP, _BELOW_PREP, _ABOVE_VERB, _BELOW_VERB) if (m := p.search(text))]
    found += [m.end() for m in re.finditer(r"\b(?:cross(?:es)?|hits?|reach(?:es)?|touch(?:es)?|at|to)\b", text, re.I)]
    return min(found) if found else None


def _numbers_in(text: str) -> list[_Number]:
    out = []
    for m in _NUMBER.finditer(text):
        value = float(m["num"].replace(",", ""))
        if m["unit"]:
            value *= _UNITS[m["unit"].lower()]
        if m["neg"]:
            value = -value
        out.append(_Number(value=value, pct=bool(m["pct"]), start=m.start(), end=m.end()))
    return out


def _markets_in(text: str) -> list[str]:
    """Markets ``text`` names, in order: symbols and names in any spelling, and typos of the names ('solona')."""
    from rapidfuzz import fuzz, process

    found: list[str] = []
    for token in _WORD.findall(text):
        market = symbols.normalize(token)
        if market is None and len(token) >= 6:
            match = process.extractOne(token.lower(), _FUZZY_NAMES, scorer=fuzz.ratio, score_cutoff=80)
            market = symbols.normalize(match[0]) if match else None
        if market is not None and market not in found:
            found.append(market)
    return found


def _join(names: Sequence[str]) -> str:
    return ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else "".join(names)
