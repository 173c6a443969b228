"""RssCollector against feeds served from 127.0.0.1: parsing, tagging, de-duplication, and per-feed errors."""

from __future__ import annotations

import hashlib
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from mikey.errors import FeedError
from mikey.market import news
from mikey.market.news import RssCollector, SeenKeys, clean_text, normalize_link, normalize_title
from tests.fakes.collector_server import LocalServer, Reply

RSS = "application/rss+xml; charset=utf-8"
ATOM = "application/atom+xml"
FETCHED_AT = datetime(2025, 6, 11, 6, 0, tzinfo=UTC)
TIMEOUT = 0.5


@pytest.fixture
def server() -> Iterator[LocalServer]:
    with LocalServer() as srv:
        srv.routes["/rss"] = Reply.fixture("news_rss.xml", RSS)
        srv.routes["/atom"] = Reply.fixture("news_atom.xml", ATOM)
        yield srv


def collector(server: LocalServer, *paths: str, **kwargs: object) -> RssCollector:
    return RssCollector([server.url(p) for p in paths], TIMEOUT, clock=lambda: FETCHED_AT, **kwargs)  # type: ignore[arg-type]


def rss(*items: str, title: str = "Test Feed") -> bytes:
    body = "".join(f"<item>{item}</item>" for item in items)
    return f'<?xml version="1.0"?><rss version="2.0"><channel><title>{title}</title>{body}</channel></rss>'.encode()


# Parsing ----------------------------------------------------------------------------------------------------------


def test_rss_items_are_normalised(server: LocalServer) -> None:
    with collector(server, "/rss") as c:
        batch = c.collect()
    assert batch.errors == []
    first = batch.items[0]
    assert first.id == "cld-2025-06-10-0001"
    assert first.source == "Chain Ledger Daily"
    assert first.title == "Solana validators ship client upgrade as SOL climbs 6%"
    assert first.url.startswith("https://news.example.com/markets/solana-client-upgrade")
    assert first.published_at == datetime(2025, 6, 10, 12, 3, tzinfo=UTC)  # +0200 in the feed
    assert first.summary == "The upgrade cuts vote latency, validators say. More on SOL & the network."
    assert first.symbols == ["SOL"]
    assert [item.symbols for item in batch.items] == [["SOL"], ["BTC"], [], ["ETH"]]


def test_atom_entries_are_normalised(server: LocalServer) -> None:
    with collector(server, "/atom") as c:
        items = c.collect().items
    assert [i.id for i in items] == [f"tag:perpdesk.example.org,2025:entry-{n}" for n in range(101, 106)]
    first = items[0]
    assert first.source == "Perp Desk"
    assert first.published_at == datetime(2025, 6, 10, 12, 30, tzinfo=UTC)  # published wins over updated
    assert first.summary == "Shorts paid longs for six straight hours."
    assert first.symbols == ["SOL"]
    only_updated = items[3]
    assert only_updated.published_at == datetime(2025, 6, 9, 22, 15, tzinfo=UTC)
    assert only_updated.summary == "Validators & stakers see shorter waits."
    assert only_updated.symbols == ["ETH"]
    assert items[4].symbols == []  # "Resolve to consolidate: the console wars"


def test_entry_without_any_date_gets_the_fetch_time(server: LocalServer) -> None:
    with collector(server, "/rss") as c:
        undated = c.collect().items[3]
    assert undated.title.startswith("Ether options open interest")
    assert undated.published_at == FETCHED_AT


def test_id_falls_back_to_sha256_of_the_link(server: LocalServer) -> None:
    with collector(server, "/rss") as c:
        no_guid = c.collect().items[1]
    assert no_guid.id == "sha256:" + hashlib.sha256(b"https://news.example.com/markets/bitcoin-etf-inflows").hexdigest()


def test_entries_without_title_or_link_are_skipped(server: LocalServer) -> None:
    server.routes["/bare"] = Reply(200, rss("<description>no title, no link</description>",
                                            "<title>Kept</title><link>https://e.example/kept</link>"), {})
    with collector(server, "/bare") as c:
        assert [i.title for i in c.collect().items] == ["Kept"]


def test_plain_text_titles_keep_angle_brackets(server: LocalServer) -> None:
    server.routes["/lt"] = Reply(200, rss("<title>BTC &lt;100k as miners sell &amp; hold</title><link>https://e.example/lt</link>"
                                          "<description>&lt;b&gt;Bold&lt;/b&gt; claim</description>"), {})
    with collector(server, "/lt") as c:
        (item,) = c.collect().items
    assert item.title == "BTC <100k as miners sell & hold"
    assert item.summary == "Bold claim"
    assert item.symbols == ["BTC"]


def test_requests_identify_the_collector(server: LocalServer) -> None:
    with collector(server, "/rss") as c:
        c.collect()
    (request,) = server.requests_to("/rss")
    assert request.headers["user-agent"].startswith("mikey-news/")
    assert "application/rss+xml" in request.headers["accept"]


def test_redirects_are_followed(server: LocalServer) -> None:
    server.routes["/old-feed"] = Reply(301, b"", {"Location": "/rss"})
    with collector(server, "/old-feed") as c:
        batch = c.collect()
    assert batch.errors == [] and len(batch.items) == 4


# De-duplication ---------------------------------------------------------------------------------------------------


def test_duplicates_across_feeds_are_skipped(server: LocalServer) -> None:
    with collector(server, "/rss", "/atom") as c:
        batch = c.collect()
    titles = [i.title for i in batch.items]
    assert len(titles) == 7
    # Atom entry-102 links to the RSS story (http, www., trailing slash, no utm_*): same article.
    assert "Solana client upgrade lands; SOL up 6%" not in titles
    # Atom entry-103 has its own id and link but the RSS headline (other case) on the same day: a syndicated copy.
    assert "Bitcoin ETF Inflows Top $500M for Third Straight Day" not in titles


def test_nothing_is_returned_twice_across_calls(server: LocalServer) -> None:
    with collector(server, "/rss", "/atom") as c:
        assert len(c.collect().items) == 7
        assert c.collect().items == []
        server.routes["/rss"] = Reply(200, rss(
            "<title>Solana validators ship client upgrade as SOL climbs 6%</title>"
            '<guid isPermaLink="false">cld-2025-06-10-0001</guid>',
            "<title>SOL open interest hits a record</title><link>https://news.example.com/markets/sol-oi</link>"
            "<pubDate>Wed, 11 Jun 2025 05:00:00 GMT</pubDate>",
        ), {"Content-Type": RSS})
        again = c.collect()
    assert [i.title for i in again.items] == ["SOL open interest hits a record"]
    assert again.errors == []


def test_the_same_entry_twice_in_one_feed_is_returned_once(server: LocalServer) -> None:
    entry = "<title>Dup</title><link>https://e.example/dup</link><guid>dup-1</guid>"
    server.routes["/dups"] = Reply(200, rss(entry, entry), {})
    with collector(server, "/dups") as c:
        assert len(c.collect().items) == 1


def test_a_recurring_headline_on_another_day_is_news(server: LocalServer) -> None:
    server.routes["/daily"] = Reply(200, rss(
        "<title>Daily market wrap</title><link>https://e.example/wrap/10</link>"
        "<pubDate>Tue, 10 Jun 2025 20:00:00 GMT</pubDate>",
        "<title>Daily market wrap</title><link>https://e.example/wrap/11</link>"
        "<pubDate>Wed, 11 Jun 2025 20:00:00 GMT</pubDate>",
    ), {})
    with collector(server, "/daily") as c:
        assert len(c.collect().items) == 2


def test_the_seen_set_is_bounded(server: LocalServer) -> None:
    first = Reply(200, rss("<title>First</title><link>https://e.example/1</link>"), {})
    second = Reply(200, rss("<title>Second</title><link>https://e.example/2</link>"), {})
    with collector(server, "/one", max_seen=3) as c:  # room for one article's keys (id, link, title)
        server.routes["/one"] = [first, second, first]
        assert [i.title for i in c.collect().items] == ["First"]
        assert [i.title for i in c.collect().items] == ["Second"]
        assert len(c._seen) == 3
        assert [i.title for i in c.collect().items] == ["First"]  # forgotten, so new again


def test_seen_keys_forget_the_least_recently_seen() -> None:
    seen = SeenKeys(max_keys=2)
    seen.add(["a"])
    seen.add(["b"])
    assert seen.seen_any(["a"])  # refreshes "a"
    seen.add(["c"])  # evicts "b", the least recently seen
    assert "a" in seen and "c" in seen and "b" not in seen
    with pytest.raises(ValueError):
        SeenKeys(0)


# Errors -----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "words"), [(404, "HTTP 404 Not Found"), (401, "HTTP 401 Unauthorized"),
                                               (500, "HTTP 500 Internal Server Error")])
def test_http_errors_name_the_feed(server: LocalServer, status: int, words: str) -> None:
    server.routes["/bad"] = Reply(status, b"nope", {"Content-Type": "text/plain"})
    with collector(server, "/bad") as c, pytest.raises(FeedError) as err:
        c.fetch(server.url("/bad"))
    assert str(err.value) == f"news feed {server.url('/bad')}: {words}"


def test_a_hanging_feed_times_out(server: LocalServer) -> None:
    server.routes["/hang"] = Reply(200, rss(), {}, hang=5)
    started = time.monotonic()
    with collector(server, "/hang") as c, pytest.raises(FeedError, match=r"/hang: timed out after 0\.5 s"):
        c.fetch(server.url("/hang"))
    assert time.monotonic() - started < 2


@pytest.mark.parametrize(
    "body",
    [b"", b"this is not xml", b"<html><body><p>Cloudflare says hi</p></body></html>", b'{"items": []}',
     b"<rss version='2.0'><channel><title>cut off"],
)
def test_unparseable_feeds_raise(server: LocalServer, body: bytes) -> None:
    server.routes["/junk"] = Reply(200, body, {"Content-Type": "text/html"})
    with collector(server, "/junk") as c, pytest.raises(FeedError) as err:
        c.fetch(server.url("/junk"))
    assert str(err.value).startswith(f"news feed {server.url('/junk')}: not a readable RSS or Atom feed")


def test_a_truncated_feed_keeps_the_entries_it_has(server: LocalServer) -> None:
    whole = rss("<title>First SOL story</title><link>https://e.example/1</link>")
    server.routes["/cut"] = Reply(200, whole[: whole.index(b"</item>") + 7], {})
    with collector(server, "/cut") as c:
        assert [i.title for i in c.collect().items] == ["First SOL story"]


def test_an_unreachable_host_is_a_feed_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}/feed"
    with RssCollector([url], TIMEOUT) as c, pytest.raises(FeedError, match=r"request failed"):
        c.fetch(url)


def test_oversized_feeds_are_refused(server: LocalServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(news, "MAX_FEED_BYTES", 1000)
    with collector(server, "/rss") as c, pytest.raises(FeedError, match="larger than 1000 bytes"):
        c.fetch(server.url("/rss"))


def test_one_bad_feed_does_not_stop_the_others(server: LocalServer) -> None:
    server.routes["/down"] = Reply(503, b"", {})
    server.routes["/hang"] = Reply(200, b"", {}, hang=5)
    server.routes["/html"] = Reply(200, b"<html><body>login</body></html>", {"Content-Type": "text/html"})
    with collector(server, "/down", "/rss", "/hang", "/html", "/atom") as c:
        batch = c.collect()
    assert len(batch.items) == 7
    assert [type(e) for e in batch.errors] == [FeedError] * 3
    for error, path in zip(batch.errors, ("/down", "/hang", "/html"), strict=True):
        assert str(error).startswith(f"news feed {server.url(path)}: ")
    assert "HTTP 503" in str(batch.errors[0])
    assert "timed out" in str(batch.errors[1])
    assert "not a readable RSS or Atom feed" in str(batch.errors[2])


def test_feedparser_never_opens_what_the_body_names(server: LocalServer, tmp_path: Path) -> None:
    secret = tmp_path / "secret.xml"
    secret.write_bytes(rss("<title>local file</title><link>https://e.example/local</link>"))
    server.routes["/other"] = Reply.fixture("news_rss.xml", RSS)
    for body in (server.url("/other").encode(), str(secret).encode()):
        server.routes["/pointer"] = Reply(200, body, {"Content-Type": "text/plain"})
        with collector(server, "/pointer") as c, pytest.raises(FeedError, match="not a readable RSS or Atom feed"):
            c.fetch(server.url("/pointer"))
    assert server.requests_to("/other") == []


# Lifecycle --------------------------------------------------------------------------------------------------------


def test_an_injected_client_is_left_open_and_an_own_client_is_closed(server: LocalServer) -> None:
    with httpx.Client() as shared:
        with RssCollector([server.url("/rss")], TIMEOUT, client=shared) as c:
            assert len(c.collect().items) == 4
        assert not shared.is_closed
    own = RssCollector([server.url("/rss")], TIMEOUT)
    own.close()
    assert own._client.is_closed


# Normalisation helpers --------------------------------------------------------------------------------------------


def test_clean_text_strips_markup_and_decodes_entities() -> None:
    assert clean_text("<p>Hello <b>SOL</b>&nbsp;&amp; <a href='x'>BTC</a></p><style>p{}</style><script>x()</script>") \
        == "Hello SOL & BTC"
    assert clean_text("  plain\n text  ") == "plain text"
    assert clean_text("<p>one</p><p>two</p>") == "one two"


def test_normalize_link_ignores_scheme_www_slash_fragment_and_tracking() -> None:
    a = normalize_link("https://www.News.example.com/a/b/?utm_source=x&id=2&fbclid=y#top")
    assert a == normalize_link("http://news.example.com/a/b?id=2") == "news.example.com/a/b?id=2"
    assert normalize_link("https://e.example/a?id=2") != normalize_link("https://e.example/a?id=3")


def test_normalize_title_ignores_case_and_punctuation() -> None:
    assert normalize_title("Bitcoin ETF Inflows — Top $500M!") == normalize_title("bitcoin etf inflows top 500m")
