"""The ``offline`` group: a deterministic writer that renders the facts as text, without any model.

It is the last fallback of every chain, so MIKEY always answers, and its numbers are the facts' own display strings.
The facts reach it typed, with the call (``ChatModel.complete(..., facts=...)``, carried in the request's metadata);
a caller that has only a prompt can give it the ``<facts>`` block a model sees, which it parses back.
"""

from __future__ import annotations

import re
from typing import Any

from mikey.domain import Facts
from mikey.errors import InvalidInput

FACTS_BLOCK = re.compile(r"<facts>\n(.*?)\n</facts>", re.DOTALL)


def facts_block(facts: Facts) -> str:
    """The facts as a writer sees them: ``name: display`` lines between ``<facts>`` tags.

    Plain lines rather than JSON: small local models copy numbers from them far more faithfully, and the offline
    writer parses them back just as reliably. Readings that are words (signal, sentiment, patterns, risk level) are
    lines too; they hold no numbers, so grounding has nothing to check in them.
    """
    numbers = facts.numbers()
    lines = [f"symbol: {facts.symbol}"]
    if numbers:
        lines.append(f"as_of: {numbers[0].as_of.date().isoformat()}")
    lines += [f"{f.name}: {f.display}" for f in numbers]
    lines += [f"{name}: {text}" for name, text in qualitative(facts).items()]
    return "<facts>\n" + "\n".join(lines) + "\n</facts>"


def payload(facts: Facts) -> dict[str, Any]:
    """The facts as the writer reads them: symbol, as-of date, and each fact's display string by name."""
    numbers = facts.numbers()
    as_of = numbers[0].as_of.date().isoformat() if numbers else None
    return {"symbol": facts.symbol, "as_of": as_of,
            "facts": {**{f.name: f.display for f in numbers}, **qualitative(facts)}}


def write(facts: Facts) -> str:
    """Plain sentences over typed facts (what chat and pipeline hand over with their calls)."""
    return render(payload(facts))


def qualitative(facts: Facts) -> dict[str, str]:
    """The word readings of the facts: signal action and its leading factors, sentiment, patterns, risk level."""
    out: dict[str, str] = {}
    if facts.signal is not None:
        out["signal"] = facts.signal.action
        leading = sorted(facts.signal.factors, key=lambda f: abs(f.contribution), reverse=True)
        drivers = [f"{f.name} ({'bullish' if f.contribution > 0 else 'bearish'})" for f in leading[:3]
                   if f.contribution != 0]
        if drivers:
            out["signal_drivers"] = ", ".join(drivers)
    if facts.sentiment is not None and facts.sentiment.items:
        out["sentiment"] = facts.sentiment.label
    named = [f"{p.direction} {p.name}" for p in facts.patterns if p.level is None]
    if named:
        out["patterns"] = ", ".join(named[:4])
    if facts.risk is not None:
        out["risk_level"] = facts.risk.risk_level
        out["position"] = f"{facts.risk.side} {facts.risk.market}"
    if facts.compared:
        out["compared"] = ", ".join(other.symbol for other in facts.compared)
    return out


def parse_facts(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """The facts payload (symbol, as_of, facts) from the last user message that carries a facts block."""
    for message in reversed(messages):
        if message.get("role") != "user":
            continue
        found = FACTS_BLOCK.search(str(message.get("content", "")))
        if not found:
            continue
        fields = dict(line.split(": ", 1) for line in found.group(1).splitlines() if ": " in line)
        if "symbol" not in fields:
            raise InvalidInput("the facts block names no symbol")
        symbol, as_of = fields.pop("symbol"), fields.pop("as_of", None)
        return {"symbol": symbol, "as_of": as_of, "facts": fields}
    raise InvalidInput("the offline writer needs a <facts> block in the prompt")


def render(payload: dict[str, Any]) -> str:
    """Plain sentences over the facts. Every number printed is one of the payload's strings."""
    symbol, as_of, f = payload["symbol"], payload.get("as_of"), payload["facts"]
    out: list[str] = []
    if "price" in f:
        line = f"{symbol} last closed at {f['price']} USD" + (f" on {as_of}" if as_of else "")
        if "change_1d_pct" in f:
            line += f", {f['change_1d_pct']} on the day"
        out.append(line + ".")
    if "rsi_14" in f:
        rsi = float(f["rsi_14"])
        zone = "overbought" if rsi >= 70 else "oversold" if rsi <= 30 else "neutral"
        out.append(f"RSI(14) is {f['rsi_14']}, in {zone} territory.")
    if "macd" in f and "macd_signal" in f:
        above = float(f["macd"]) > float(f["macd_signal"])
        out.append(
            f"The MACD line ({f['macd']}) is {'above' if above else 'below'} its signal line ({f['macd_signal']}), "
            f"a {'bullish' if above else 'bearish'} momentum reading."
        )
    if {"bb_upper", "bb_middle", "bb_lower", "price"} <= f.keys():
        price, upper, middle, lower = (float(f[k]) for k in ("price", "bb_upper", "bb_middle", "bb_lower"))
        where = "above the upper" if price > upper else "below the lower" if price < lower else "inside the"
        side = "above" if price >= middle else "below"
        bands = "Bollinger Bands" if where == "inside the" else "Bollinger Band"
        band = f"Price is {where} {bands} ({f['bb_lower']} to {f['bb_upper']})"
        out.append(f"{band}, {side} the middle band at {f['bb_middle']}.")
    if "atr_14" in f:
        out.append(f"ATR(14) is {f['atr_14']} USD, the typical daily range.")
    if "signal" in f:
        line = f"The code signal is {f['signal']}"
        if "signal_strength" in f:
            line += f" with strength {f['signal_strength']}"
        out.append(line + (f", led by {f['signal_drivers']}." if "signal_drivers" in f else "."))
    if "sentiment" in f:
        score = f" ({f['sentiment_score']})" if "sentiment_score" in f else ""
        out.append(f"News sentiment is {f['sentiment']}{score}.")
    levels = [f"{kind} near {f[kind + '_1']}" for kind in ("support", "resistance") if kind + "_1" in f]
    if levels:
        out.append(f"Code-found levels: {' and '.join(levels)}.")
    if "patterns" in f:
        out.append(f"Patterns: {f['patterns']}.")
    out += _risk_sentences(f)
    for other in [s.strip() for s in f.get("compared", "").split(",") if s.strip()]:
        key = other.lower()
        if f"{key}_price" in f:
            line = f"{other} last closed at {f[key + '_price']} USD"
            if f"{key}_change_1d_pct" in f:
                line += f", {f[key + '_change_1d_pct']} on the day"
            if f"{key}_rsi_14" in f:
                line += f", RSI(14) {f[key + '_rsi_14']}"
            out.append(line + ".")
    return " ".join(out) if out else f"No facts are available for {symbol}."


def _risk_sentences(f: dict[str, str]) -> list[str]:
    if "risk_level" not in f:
        return []
    out = []
    if "position_leverage" in f:
        out.append(f"A {f['position_leverage']} {f.get('position', 'position')} with {f['position_collateral']} USD "
                   f"collateral has a notional of {f['position_notional']} USD.")
    if "liquidation_price" in f:
        distance = f" ({f['distance_to_liquidation_pct']} away)" if "distance_to_liquidation_pct" in f else ""
        out.append(f"Its liquidation price is {f['liquidation_price']} USD{distance}.")
    if "var_95_pct" in f:
        out.append(f"1-day VaR(95) is {f['var_95_pct']} of notional.")
    if "risk_score" in f:
        out.append(f"Risk score {f['risk_score']} of 100: {f['risk_level']}.")
    return out


def handler() -> Any:
    """The LiteLLM provider instance for ``mikey-offline/...`` models."""
    from mikey.router.providers import text_provider_class, word_count

    class OfflineWriter(text_provider_class()):
        def generate(self, model, messages, params):
            facts = (params.get("metadata") or {}).get("facts")
            text = write(facts) if isinstance(facts, Facts) else render(parse_facts(messages))
            return text, word_count(messages), len(text.split())

    return OfflineWriter()
