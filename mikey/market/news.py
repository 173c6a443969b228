"""News from RSS 2.0 and Atom feeds, as de-duplicated, symbol-tagged ``NewsItem`` objects.

The feeds are fetched with httpx (so one client, timeout and transport policy covers every market-data source, and
tests can serve feeds from 127.0.0.1); feedparser only ever parses the bytes we hand it and never fetches a URL
itself. One failing feed does not stop the others: ``collect`` returns the items of the feeds that worked and a
``FeedError`` for each that did not.
"""

from __future__ import annotations

import hashlib
import html
import io
import logging
import re
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import feedparser
import httpx

from mikey.domain import NewsItem
from mikey.errors import FeedError
from mikey.market.http import OwnedHttpClient
from mikey.market.tagging import tag_symbols

logger = logging.getLogger(__name__)

USER_AGENT = "mikey-news/0.1 (RSS/Atom collector)"
ACCEPT = "application/rss+xml, application/atom+xml, application/xml;q=0.9, text/xml;q=0.9, */*;q=0.5"
MAX_FEED_BYTES = 5_000_000
"""Feeds larger than this are refused: real feeds are well under 1 MB, and a collector polls untrusted URLs."""


@dataclass(frozen=True)
class NewsBatch:
    """What one ``collect`` call found: new items from every feed that worked, and one error per feed that did not."""

    items: list[NewsItem] = field(default_factory=list)
    errors: list[FeedError] = field(default_factory=list)


class SeenKeys:
    """A bounded set of de-duplication keys that forgets the least recently seen first.

    Bounded because a collector runs for weeks; old keys only matter while their articles are still in the feeds,
    and a feed shows its last few dozen entries, so the default remembers far more than any feed repeats.
    """

    def __init__(self, max_keys: int = 20_000) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self.max_keys = max_keys
        self._keys: OrderedDict[str, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def seen_any(self, keys: Iterable[str]) -> bool:
        """Whether any of ``keys`` was added before; seen keys are refreshed, so a repeating article stays known."""
        hit = False
        for key in keys:
            if key in self._keys:
                self._keys.move_to_end(key)
                hit = True
        return hit

    def add(self, keys: Iterable[str]) -> None:
        for key in keys:
            self._keys[key] = None
            self._keys.move_to_end(key)
        while len(self._keys) > self.max_keys:
            self._keys.popitem(last=False)


class RssCollector(OwnedHttpClient):
    """Fetches RSS 2.0 and Atom feeds and returns each article once, across feeds and across calls.

    An article counts as seen when its id (the feed's guid/id), its normalised link, or its normalised title on the
    same UTC day was seen before. Titles are compared per day so syndicated copies (same headline, different guid
    and link) collapse into one, while a recurring headline such as "Daily market wrap" is still news tomorrow.

    Args:
        feed_urls: RSS or Atom feed URLs, fetched in this order.
        timeout: Seconds for each network step of one request (connect, read...), as httpx counts them.
        client: An httpx client to use (tests, shared connection pools); it is not closed by ``close``. Default: an
            own client, closed by ``close`` or at the end of a ``with`` block.
        max_seen: How many de-duplication keys to remember (each article adds up to three).
        clock: The fetch time, for entries without any date; injectable for tests.
    """

    def __init__(
        self,
        feed_urls: Sequence[str],
        timeout: float,
        client: httpx.Client | None = None,
        *,
        max_seen: int = 20_000,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        super().__init__(client, timeout=timeout, follow_redirects=True)
        self.feed_urls = list(feed_urls)
        self._seen = SeenKeys(max_seen)
        self._clock = clock or (lambda: datetime.now(UTC))

    # Collecting -----------------------------------------------------------------------------------------------------

    def collect(self) -> NewsBatch:
        """Fetch every feed once and return the articles not seen before, plus one ``FeedError`` per failed feed."""
        batch = NewsBatch()
        for url in self.feed_urls:
            try:
                entries = self.fetch(url)
            except FeedError as exc:
                logger.info("%s", exc)
                batch.errors.append(exc)
                continue
            for item in entries:
                keys = dedup_keys(item)
                if not self._seen.seen_any(keys):
                    batch.items.append(item)
                self._seen.add(keys)
        return batch

    def fetch(self, url: str) -> list[NewsItem]:
        """Every entry of one feed as a ``NewsItem``, without de-duplication.

        Raises:
            FeedError: naming ``url``, for HTTP errors, timeouts, unreachable hosts, oversized or unparseable feeds.
        """
        body, content_type = self._download(url)
        return parse_feed(body, url, content_type=content_type, fetched_at=self._clock())

    def _download(self, url: str) -> tuple[bytes, str]:
        headers = {"User-Agent": USER_AGENT, "Accept": ACCEPT}
        try:
            with self._client.stream("GET", url, headers=headers, timeout=self.timeout, follow_redirects=True) as resp:
                if resp.status_code >= 400:
                    raise FeedError(f"news feed {url}: HTTP {resp.status_code} {resp.reason_phrase}".rstrip())
                chunks: list[bytes] = []
                size = 0
                for chunk in resp.iter_bytes():
                    size += len(chunk)
                    if size > MAX_FEED_BYTES:
                        raise FeedError(f"news feed {url}: larger than {MAX_FEED_BYTES} bytes; refused")
                    chunks.append(chunk)
                return b"".join(chunks), resp.headers.get("content-type", "")
        except httpx.TimeoutException as exc:
            raise FeedError(f"news feed {url}: timed out after {self.timeout:g} s ({type(exc).__name__})") from exc
        except httpx.HTTPError as exc:
            raise FeedError(f"news feed {url}: request failed: {exc or type(exc).__name__}") from exc


# Parsing --------------------------------------------------------------------------------------------------------------


def parse_feed(body: bytes, url: str, *, content_type: str = "", fetched_at: datetime) -> list[NewsItem]:
    """Parse RSS 2.0 or Atom bytes into ``NewsItem`` objects.

    Entries without any date (no published, no updated) get ``fetched_at`` as ``published_at``: the first time MIKEY
    saw them is the best bound available, and such an item is still worth tagging. Feeds feedparser could only read
    in its forgiving mode (a stray ``&``, a truncated tail) are accepted when entries came out of them, since many real
    feeds are slightly broken; bytes that are not a feed at all raise.

    Raises:
        FeedError: when the bytes are not an RSS or Atom feed.
    """
    headers = {"content-location": url}
    if content_type:
        headers["content-type"] = content_type
    # A stream, not bytes: given bytes or str, feedparser first tries them as a URL or a local file name to open.
    parsed = feedparser.parse(
        io.BytesIO(body), response_headers=headers, sanitize_html=True, resolve_relative_uris=True
    )
    version = parsed.get("version")
    entries = parsed.get("entries", [])
    if not version or (parsed.get("bozo") and not entries):
        reason = parsed.get("bozo_exception") or "no RSS or Atom root element"
        raise FeedError(f"news feed {url}: not a readable RSS or Atom feed ({reason})")
    if parsed.get("bozo"):
        logger.debug("news feed %s read in forgiving mode: %s", url, parsed.get("bozo_exception"))
    feed = parsed.get("feed", {})
    source = clean_text(feed.get("title", "")) or (urlsplit(url).hostname or url)
    items = [_to_item(entry, source, url, fetched_at) for entry in entries]
    return [item for item in items if item is not None]


def _to_item(entry: Any, source: str, feed_url: str, fetched_at: datetime) -> NewsItem | None:
    title = _entry_text(entry, "title")
    link = (entry.get("link") or "").strip()
    if not title and not link:
        return None  # nothing to show or open
    summary = _entry_text(entry, "summary")
    guid = (entry.get("id") or "").strip()
    if guid:
        item_id = guid
    elif link:
        item_id = "sha256:" + hashlib.sha256(link.encode()).hexdigest()
    else:
        item_id = "sha256:" + hashlib.sha256(f"{feed_url}\n{title}".encode()).hexdigest()
    return NewsItem(
        id=item_id,
        source=source,
        title=title or link,
        url=link,
        published_at=_entry_time(entry) or fetched_at,
        summary=summary,
        symbols=tag_symbols(f"{title}\n{summary}"),
    )


def _entry_text(entry: Any, key: str) -> str:
    """An entry's title or summary as plain text. Only content the feed marks as HTML is stripped of tags, so a plain
    title such as "BTC <100k as miners sell" keeps its "<"."""
    value = entry.get(key) or ""
    kind = (entry.get(f"{key}_detail") or {}).get("type", "text/html")
    return clean_text(value) if "html" in kind else _SPACES.sub(" ", value).strip()


def _entry_time(entry: Any) -> datetime | None:
    """Published, else updated, as an aware UTC datetime; feedparser already normalised the tuples to UTC."""
    for key in ("published_parsed", "updated_parsed"):
        parts = entry.get(key)
        if parts:
            try:
                return datetime(*parts[:6], tzinfo=UTC)
            except (TypeError, ValueError):
                continue
    return None


# Normalisation --------------------------------------------------------------------------------------------------------


class _TextExtractor(HTMLParser):
    """Collects the text of an HTML fragment, dropping tags, scripts and styles, decoding entities."""

    _BLOCK = {"p", "br", "div", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        elif tag in self._BLOCK:
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style") and self._skip:
            self._skip -= 1
        elif tag in self._BLOCK:
            self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


_SPACES = re.compile(r"\s+")


def clean_text(fragment: str) -> str:
    """Plain text of an HTML fragment or plain string: tags removed, entities decoded, whitespace collapsed."""
    if "<" not in fragment and "&" not in fragment:
        return _SPACES.sub(" ", fragment).strip()
    extractor = _TextExtractor()
    extractor.feed(fragment)
    extractor.close()
    return _SPACES.sub(" ", html.unescape("".join(extractor.parts))).strip()


def normalize_link(link: str) -> str:
    """A link reduced to what identifies the article: host without "www.", path without trailing "/", and the query
    without tracking parameters; scheme and fragment dropped (http and https copies are one article)."""
    parts = urlsplit(link.strip())
    host = (parts.hostname or "").lower().removeprefix("www.")
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not _is_tracking(k)]
    path = parts.path.rstrip("/")
    return f"{host}{path}" + (f"?{urlencode(sorted(query))}" if query else "")


def _is_tracking(param: str) -> bool:
    name = param.lower()
    return name.startswith("utm_") or name in {"fbclid", "gclid", "mc_cid", "mc_eid", "ref", "cmpid"}


_NON_WORD = re.compile(r"[\W_]+")


def normalize_title(title: str) -> str:
    """A title reduced for comparison: case-folded, punctuation and spacing collapsed."""
    return _NON_WORD.sub(" ", title.casefold()).strip()


def dedup_keys(item: NewsItem) -> list[str]:
    """The keys under which an item counts as already seen: its id, its normalised link, its title on its UTC day."""
    keys = [f"id:{item.id}"]
    if item.url:
        keys.append(f"link:{normalize_link(item.url)}")
    title = normalize_title(item.title)
    if title:
        keys.append(f"title:{item.published_at.date().isoformat()}:{title}")
    return keys
