"""Switchboard on-demand prices from a crossbar server's simulate endpoint: a second source to check Pyth against.

Crossbar (``https://crossbar.switchboard.xyz`` or a self-hosted one) runs a feed's oracle jobs on request and returns
what the oracles would report. ``GET /simulate/<feedHash>[,<feedHash>...]`` answers a JSON list of
``{"feedHash": "...", "results": [number | string, ...] | null, "receipts": [...], "error"?: "..."}``: the route and
shape of ``CrossbarClient.simulateFeeds`` / ``CrossbarSimulateResponse`` in Switchboard's SDK
(switchboard-xyz/switchboard-sdk, ``javascript/common/src/crossbar-client.ts`` and ``types/crossbar.ts``; the Rust
client's ``simulate_feeds`` calls the same route). A simulation is computed on the spot and carries no publish time,
so ``as_of`` is when the answer arrived. The price is the median of ``results``, exact (JSON numbers are parsed as
Decimal, never float); ``null`` results (jobs that failed) are left out of the median.

Feed hashes are configuration: symbol -> the 32-byte hex hash of the feed's job definition, as Switchboard's explorer
shows it. Nothing here invents one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from decimal import Decimal, InvalidOperation, localcontext
from typing import Any

import httpx

from mikey.domain import Quote
from mikey.domain.utc import utc_now
from mikey.errors import ConfigError, FeedError
from mikey.market import symbols as symbol_names
from mikey.market.http import OwnedHttpClient, auth_headers, get_json
from mikey.market.normalize import MAX_MAGNITUDE, normalize_feed_id
from mikey.market.symbols import resolve_symbols

CROSSBAR = "Switchboard crossbar"
_FEED_HASH = re.compile(r"(0x)?[0-9a-fA-F]{64}")
_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?")


def median(values: list[Decimal]) -> Decimal:
    """The exact median: the middle value, or the mean of the two middle values (no rounding)."""
    if not values:
        raise FeedError("no values to take the median of")
    ordered = sorted(values)
    mid = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[mid]
    with localcontext() as ctx:
        ctx.prec = 100  # halving a sum of two Decimals needs at most one more digit than they have
        return (ordered[mid - 1] + ordered[mid]) / 2


class SwitchboardClient(OwnedHttpClient):
    """Quotes from Switchboard on-demand feeds via crossbar simulation."""

    name = "switchboard"

    def __init__(self, base_url: str, feed_hashes: Mapping[str, str], timeout: float = 10.0,
                 client: httpx.Client | None = None, *, clock: Callable[[], datetime] = utc_now) -> None:
        """A client for one crossbar server and the configured feeds; nothing is sent before the first call.

        Args:
            base_url: crossbar root, e.g. ``settings.switchboard_url``.
            feed_hashes: symbol (any spelling MIKEY knows) -> feed hash, 64 hex digits with or without ``0x``.
            timeout: seconds for each request.
            client: an ``httpx.Client`` to reuse (not closed by ``close``); default: one of our own.
            clock: stamps ``as_of`` when an answer arrives.

        Raises:
            ConfigError: a symbol MIKEY does not cover, or a hash that is not 32 bytes of hex.
        """
        super().__init__(client, timeout=timeout)
        self.base_url = base_url.rstrip("/")
        self.clock = clock
        self.feed_hashes: dict[str, str] = {}
        for name, feed_hash in feed_hashes.items():
            symbol = symbol_names.normalize(name)
            if symbol is None:
                raise ConfigError(f"Switchboard feed hash given for unknown market {name!r}")
            if not isinstance(feed_hash, str) or not _FEED_HASH.fullmatch(feed_hash.strip()):
                raise ConfigError(f"Switchboard feed hash for {symbol} is not 64 hex digits: {feed_hash!r}")
            self.feed_hashes[symbol] = feed_hash.strip()
        self._symbol_by_hash = {normalize_feed_id(h): s for s, h in self.feed_hashes.items()}

    def symbols(self) -> list[str]:
        return sorted(self.feed_hashes)

    def quote(self, symbol: str) -> Quote:
        """The simulated price of one market; see ``latest``."""
        return self.latest([symbol])[0]

    def latest(self, symbols: Iterable[str]) -> list[Quote]:
        """One simulated quote per symbol, in the order asked, from a single request.

        Raises:
            UnknownSymbol: a symbol without a configured feed hash.
            FeedError: HTTP error, timeout, malformed JSON, a missing field, a feed hash not asked for, a feed whose
                simulation reported an error or no results, a result that is not a number.
        """
        wanted = resolve_symbols(symbols, self.feed_hashes)
        url = f"{self.base_url}/simulate/{','.join(self.feed_hashes[s] for s in wanted)}"
        payload = get_json(self._client, url, source=CROSSBAR, params=None, headers=auth_headers(None),
                           timeout=self.timeout)
        as_of = self.clock()
        quotes = self.parse_simulation(payload, wanted, as_of)
        missing = [s for s in wanted if s not in quotes]
        if missing:
            raise FeedError(f"{CROSSBAR} returned no simulation for {', '.join(missing)}")
        return [quotes[s] for s in wanted]

    def parse_simulation(self, payload: Any, wanted: list[str], as_of: datetime) -> dict[str, Quote]:
        """Quotes by symbol from a ``/simulate`` answer; every entry must be for a wanted feed."""
        if not isinstance(payload, list):
            raise FeedError(f"{CROSSBAR}: expected a list of simulations, got {type(payload).__name__}")
        quotes: dict[str, Quote] = {}
        for i, entry in enumerate(payload):
            where = f"{CROSSBAR} simulation[{i}]"
            if not isinstance(entry, dict):
                raise FeedError(f"{where}: expected an object, got {type(entry).__name__}")
            feed_hash = entry.get("feedHash")
            if not isinstance(feed_hash, str):
                raise FeedError(f"{where}: missing field 'feedHash'")
            symbol = self._symbol_by_hash.get(normalize_feed_id(feed_hash))
            if symbol is None:
                raise FeedError(f"{where}: unknown feed hash {feed_hash}")
            if symbol not in wanted:
                raise FeedError(f"{where}: feed hash {feed_hash} ({symbol}) was not requested")
            if symbol in quotes:
                raise FeedError(f"{where}: {symbol} simulated twice")
            where = f"{where} ({symbol})"
            if entry.get("error"):
                raise FeedError(f"{where}: simulation failed: {entry['error']}")
            if "results" not in entry:
                raise FeedError(f"{where}: missing field 'results'")
            results = entry["results"]
            if not isinstance(results, list):
                raise FeedError(f"{where}: 'results' is not a list: {results!r}")
            values = [_result(v, f"{where} results[{j}]") for j, v in enumerate(results) if v is not None]
            if not values:
                raise FeedError(f"{where}: the simulation produced no results")
            quotes[symbol] = Quote(symbol=symbol, price=median(values), as_of=as_of, source=self.name)
        return quotes


def _result(value: Any, where: str) -> Decimal:
    """One simulation result as an exact Decimal: a JSON number (already Decimal or int) or a decimal string."""
    if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
        try:
            value = Decimal(value.strip())
        except InvalidOperation as exc:  # pragma: no cover - the pattern admits only valid literals
            raise FeedError(f"{where}: not a number: {value!r}") from exc
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise FeedError(f"{where}: not a number: {value!r}")
    number = Decimal(value)
    if not number.is_finite() or abs(number) >= MAX_MAGNITUDE:
        raise FeedError(f"{where}: {number} is not a plausible price")
    return number
