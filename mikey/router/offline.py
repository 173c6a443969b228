"""The ``offline`` group: a deterministic writer that renders the facts as text, without any model.

It is the last fallback of every chain, so MIKEY always answers, and its numbers are the facts' own display strings.
The facts reach it the same way they reach a model: as ``name: value`` lines between ``<facts>`` tags in the prompt.
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
    writer parses them back just as reliably.
    """
    numbers = facts.numbers()
    lines = [f"symbol: {facts.symbol}"]
    if numbers:
        lines.append(f"as_of: {numbers[0].as_of.date().isoformat()}")
    lines += [f"{f.name}: {f.display}" for f in numbers]
    return "<facts>\n" + "\n".join(lines) + "\n</facts>"


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
    return " ".join(out) if out else f"No facts are available for {symbol}."


def handler() -> Any:
    """The LiteLLM provider instance for ``mikey-offline/...`` models."""
    from mikey.router.providers import text_provider_class, word_count

    class OfflineWriter(text_provider_class()):
        def generate(self, model, messages, params):
            text = render(parse_facts(messages))
            return text, word_count(messages), len(text.split())

    return OfflineWriter()
