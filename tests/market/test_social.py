"""XClient and DiscordClient against recorded API responses served from 127.0.0.1."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import SecretStr

from mikey.errors import FeedError, InvalidInput
from mikey.market.social import DiscordClient, XClient, social_collectors
from mikey.settings import Settings
from tests.fakes.collector_server import LocalServer, Reply, fixture_bytes

SEARCH = "/2/tweets/search/recent"
CHANNEL = "290926798999357250"
MESSAGES = f"/channels/{CHANNEL}/messages"
TIMEOUT = 0.5
X_TOKEN = "x-test-bearer-token"
DISCORD_TOKEN = "discord-test-bot-token"


@pytest.fixture
def server() -> Iterator[LocalServer]:
    with LocalServer() as srv:
        yield srv


@pytest.fixture
def x(server: LocalServer) -> Iterator[XClient]:
    with XClient(X_TOKEN, base_url=server.base_url, timeout=TIMEOUT) as client:
        yield client


@pytest.fixture
def discord(server: LocalServer) -> Iterator[DiscordClient]:
    with DiscordClient(DISCORD_TOKEN, base_url=server.base_url, timeout=TIMEOUT) as client:
        yield client


def fixture_json(name: str) -> object:
    return json.loads(fixture_bytes(name))


# X: parsing -------------------------------------------------------------------------------------------------------


def test_x_docs_example_is_parsed(server: LocalServer, x: XClient) -> None:
    server.routes[SEARCH] = Reply.fixture("x_recent_search.json", "application/json")
    (post,) = x.recent_search("python lang:en -is:retweet")
    assert post.id == "1234567890123456789"
    assert post.platform == "x"
    assert post.author == "pythondev"
    assert post.text == "Just started learning Python and loving it!"
    assert post.created_at == datetime(2024, 1, 15, 10, 30, tzinfo=UTC)
    assert post.url == "https://x.com/pythondev/status/1234567890123456789"
    assert post.metrics == {"retweet_count": 5, "reply_count": 2, "like_count": 42, "quote_count": 1}
    assert post.symbols == []
    assert x.newest_ids == {"python lang:en -is:retweet": "1234567890123456789"}


def test_x_request_asks_for_fields_and_expansions_with_bearer_auth(server: LocalServer, x: XClient) -> None:
    server.routes[SEARCH] = Reply.fixture("x_recent_search.json", "application/json")
    x.recent_search("$SOL -is:retweet", max_results=25)
    (request,) = server.requests_to(SEARCH)
    assert request.headers["authorization"] == f"Bearer {X_TOKEN}"
    assert request.query == {
        "query": ["$SOL -is:retweet"],
        "max_results": ["25"],
        "tweet.fields": ["created_at,public_metrics,author_id"],
        "expansions": ["author_id"],
        "user.fields": ["username"],
    }


def test_x_since_id_asks_only_for_newer_posts(server: LocalServer, x: XClient) -> None:
    server.routes[SEARCH] = Reply.fixture("x_recent_search_crypto.json", "application/json")
    x.recent_search("solana")
    x.recent_search("solana", since_id=x.newest_ids["solana"])
    first, second = server.requests_to(SEARCH)
    assert "since_id" not in first.query
    assert second.query["since_id"] == ["1800000000000000004"]


def test_x_posts_are_tagged_and_authors_resolved(server: LocalServer, x: XClient) -> None:
    server.routes[SEARCH] = Reply.fixture("x_recent_search_crypto.json", "application/json")
    posts = x.recent_search("crypto")
    assert [p.symbols for p in posts] == [["SOL", "BTC"], ["ETH", "BTC"], [], ["SOL"]]
    assert [p.author for p in posts] == ["perp_watcher", "gas_tracker", "devnotes", "4444444444"]
    # An author missing from includes.users: X's id-only permalink still opens the post.
    assert posts[3].url == "https://x.com/i/web/status/1800000000000000001"
    assert posts[0].metrics["impression_count"] == 18400
    assert posts[0].created_at == datetime(2025, 6, 10, 12, 5, tzinfo=UTC)


def test_x_no_results_is_an_empty_list(server: LocalServer, x: XClient) -> None:
    server.routes[SEARCH] = [Reply.fixture("x_recent_search.json", "application/json"),
                             Reply.fixture("x_recent_search_empty.json", "application/json")]
    x.recent_search("q")
    assert x.recent_search("q", since_id="1234567890123456789") == []
    assert x.newest_ids["q"] == "1234567890123456789"  # kept, so the next poll still starts after it


def test_x_accepts_a_secret_token(server: LocalServer) -> None:
    server.routes[SEARCH] = Reply.fixture("x_recent_search_empty.json", "application/json")
    with XClient(SecretStr(X_TOKEN), base_url=server.base_url, timeout=TIMEOUT) as client:
        client.recent_search("q")
    assert server.requests_to(SEARCH)[0].headers["authorization"] == f"Bearer {X_TOKEN}"


@pytest.mark.parametrize(("query", "max_results"), [("q", 9), ("q", 101), ("  ", 10)])
def test_x_rejects_bad_arguments_before_calling(server: LocalServer, x: XClient, query: str, max_results: int) -> None:
    with pytest.raises(InvalidInput):
        x.recent_search(query, max_results=max_results)
    assert server.requests == []


# X: errors --------------------------------------------------------------------------------------------------------


def test_x_401_names_the_token_without_leaking_it(server: LocalServer, x: XClient) -> None:
    server.routes[SEARCH] = Reply.fixture("x_error_401.json", "application/problem+json", status=401)
    with pytest.raises(FeedError) as err:
        x.recent_search("q")
    message = str(err.value)
    assert message.startswith("X API HTTP 401 Unauthorized")
    assert "MIKEY_X_BEARER_TOKEN" in message
    assert X_TOKEN not in message


def test_x_429_says_when_to_retry(server: LocalServer, x: XClient) -> None:
    reset = int(time.time()) + 120
    server.routes[SEARCH] = Reply.fixture("x_error_429.json", "application/json", status=429,
                                          headers={"x-rate-limit-reset": str(reset), "x-rate-limit-remaining": "0"})
    with pytest.raises(FeedError) as err:
        x.recent_search("q")
    when = datetime.fromtimestamp(reset, UTC).isoformat(timespec="seconds")
    assert str(err.value).startswith("X API HTTP 429 Too Many Requests: Rate limit exceeded; retry after " + when)


def test_x_429_without_reset_header_says_retry_later(server: LocalServer, x: XClient) -> None:
    server.routes[SEARCH] = Reply.fixture("x_error_429.json", "application/json", status=429)
    with pytest.raises(FeedError, match="retry later"):
        x.recent_search("q")


def test_x_500_is_a_feed_error(server: LocalServer, x: XClient) -> None:
    server.routes[SEARCH] = Reply(500, b"upstream exploded", {"Content-Type": "text/plain"})
    with pytest.raises(FeedError, match=r"^X API HTTP 500 Internal Server Error: upstream exploded$"):
        x.recent_search("q")


def test_x_timeout_is_a_feed_error(server: LocalServer, x: XClient) -> None:
    server.routes[SEARCH] = Reply.json({}, hang=5)
    started = time.monotonic()
    with pytest.raises(FeedError, match=r"^X API timed out after 0\.5 s"):
        x.recent_search("q")
    assert time.monotonic() - started < 2


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"<html>maintenance</html>", "X API returned malformed JSON (HTTP 200)"),
        (b"[]", "X API returned list, expected a JSON object"),
        (b'{"data": {"id": "1"}}', "'data' is not a list of posts"),
        (b'{"data": [{"id": "1", "text": "SOL"}]}', "X API post is not the documented shape"),
        (b'{"data": [{"id": "1", "created_at": "2025-06-10T12:00:00Z"}]}', "X API post is not the documented shape"),
        (b'{"data": [{"id": "1", "text": "x", "created_at": "yesterday"}]}', "X API post is not the documented shape"),
        (b'{"errors": [{"title": "Invalid Request", "detail": "One or more parameters are invalid."}]}',
         "X API returned errors and no posts: One or more parameters are invalid."),
    ],
)
def test_x_malformed_payloads_are_feed_errors(server: LocalServer, x: XClient, body: bytes, words: str) -> None:
    server.routes[SEARCH] = Reply(200, body, {"Content-Type": "application/json"})
    with pytest.raises(FeedError) as err:
        x.recent_search("q")
    assert words in str(err.value)


# Discord ----------------------------------------------------------------------------------------------------------


def test_discord_messages_are_parsed(server: LocalServer, discord: DiscordClient) -> None:
    server.routes[MESSAGES] = Reply.fixture("discord_channel_messages.json", "application/json")
    posts = discord.channel_messages(CHANNEL)
    assert [p.id for p in posts] == ["1382000000000000002", "334385199974967042"]  # the empty system message is skipped
    funding, docs_example = posts
    assert funding.platform == "discord"
    assert funding.author == "funding_rates"
    assert funding.symbols == ["SOL", "BTC"]
    assert funding.metrics == {"reactions": 5}
    assert funding.created_at == datetime(2025, 6, 10, 12, 31, 44, 120000, tzinfo=UTC)
    assert funding.url is None  # REST messages carry no guild id to build a link from
    assert docs_example.author == "Mason"
    assert docs_example.text == "Supa Hot"
    assert docs_example.created_at == datetime(2017, 7, 11, 17, 27, 7, 299000, tzinfo=UTC)
    assert docs_example.metrics == {"reactions": 1}
    assert discord.newest_ids == {CHANNEL: "1382000000000000002"}


def test_discord_request_uses_bot_auth_and_paging(server: LocalServer, discord: DiscordClient) -> None:
    server.routes[MESSAGES] = Reply.json([])
    assert discord.channel_messages(CHANNEL) == []
    discord.channel_messages(CHANNEL, after="1382000000000000002", limit=100)
    first, second = server.requests_to(MESSAGES)
    assert first.headers["authorization"] == f"Bot {DISCORD_TOKEN}"
    assert first.query == {"limit": ["50"]}
    assert second.query == {"limit": ["100"], "after": ["1382000000000000002"]}
    assert discord.newest_ids == {}


def test_discord_links_messages_that_carry_a_guild(server: LocalServer, discord: DiscordClient) -> None:
    message = fixture_json("discord_channel_messages.json")[0]  # type: ignore[index]
    server.routes[MESSAGES] = Reply.json([{**message, "guild_id": "81384788765712384"}])
    (post,) = discord.channel_messages(CHANNEL)
    assert post.url == f"https://discord.com/channels/81384788765712384/{CHANNEL}/1382000000000000002"


@pytest.mark.parametrize(("channel", "limit"), [("general", 50), (CHANNEL, 0), (CHANNEL, 101)])
def test_discord_rejects_bad_arguments_before_calling(server: LocalServer, discord: DiscordClient, channel: str,
                                                      limit: int) -> None:
    with pytest.raises(InvalidInput):
        discord.channel_messages(channel, limit=limit)
    assert server.requests == []


def test_discord_429_says_when_to_retry(server: LocalServer, discord: DiscordClient) -> None:
    server.routes[MESSAGES] = Reply.fixture("discord_rate_limited.json", "application/json", status=429,
                                            headers={"Retry-After": "65", "X-RateLimit-Scope": "user"})
    with pytest.raises(FeedError) as err:
        discord.channel_messages(CHANNEL)
    assert str(err.value) == (
        "Discord API HTTP 429 Too Many Requests: You are being rate limited.; retry after 64.57 s"
    )


def test_discord_global_429_says_so(server: LocalServer, discord: DiscordClient) -> None:
    body = {"message": "You are being rate limited.", "retry_after": 64.57, "global": True}
    server.routes[MESSAGES] = Reply.json(body, status=429, headers={"Retry-After": "65", "X-RateLimit-Global": "true"})
    with pytest.raises(FeedError, match=r"retry after 64\.57 s \(global limit\)$"):
        discord.channel_messages(CHANNEL)


def test_discord_429_without_body_falls_back_to_the_header(server: LocalServer, discord: DiscordClient) -> None:
    server.routes[MESSAGES] = Reply(429, b"", {"Retry-After": "3"})
    with pytest.raises(FeedError, match=r"retry after 3 s$"):
        discord.channel_messages(CHANNEL)


@pytest.mark.parametrize(
    ("status", "words"),
    [
        (401, "Discord API HTTP 401 Unauthorized: 401: Unauthorized; check the bot token (MIKEY_DISCORD_BOT_TOKEN)"),
        (403, "Discord API HTTP 403 Forbidden: Missing Access; the bot cannot read channel"),
        (404, "Discord API HTTP 404 Not Found: Unknown Channel; channel 290926798999357250"),
        (500, "Discord API HTTP 500 Internal Server Error"),
    ],
)
def test_discord_http_errors(server: LocalServer, discord: DiscordClient, status: int, words: str) -> None:
    messages = {401: "401: Unauthorized", 403: "Missing Access", 404: "Unknown Channel", 500: "Internal Server Error"}
    server.routes[MESSAGES] = Reply.json({"message": messages[status], "code": 0}, status=status)
    with pytest.raises(FeedError) as err:
        discord.channel_messages(CHANNEL)
    assert str(err.value).startswith(words)
    assert DISCORD_TOKEN not in str(err.value)


def test_discord_timeout_is_a_feed_error(server: LocalServer, discord: DiscordClient) -> None:
    server.routes[MESSAGES] = Reply.json([], hang=5)
    with pytest.raises(FeedError, match=r"^Discord API timed out after 0\.5 s"):
        discord.channel_messages(CHANNEL)


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"not json", "Discord API returned malformed JSON"),
        (b'{"messages": []}', "Discord API returned dict, expected a list of messages"),
        (b'[{"id": "1", "content": "SOL", "timestamp": "2025-06-10T12:00:00+00:00"}]',
         "Discord API message is not the documented shape (KeyError: 'author')"),
        (b'[{"id": "1", "content": "SOL", "author": {"username": "a"}, "timestamp": "noon"}]',
         "Discord API message is not the documented shape (ValueError"),
        (b'["just a string"]', "Discord API message is not the documented shape"),
    ],
)
def test_discord_malformed_payloads_are_feed_errors(server: LocalServer, discord: DiscordClient, body: bytes,
                                                    words: str) -> None:
    server.routes[MESSAGES] = Reply(200, body, {"Content-Type": "application/json"})
    with pytest.raises(FeedError) as err:
        discord.channel_messages(CHANNEL)
    assert words in str(err.value)


# Building from settings -------------------------------------------------------------------------------------------


def test_no_tokens_no_collectors_and_no_noise(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    assert social_collectors(Settings(home=tmp_path)) == []
    assert social_collectors(Settings(home=tmp_path, x_bearer_token="", discord_bot_token="")) == []
    assert caplog.records == []


def test_only_platforms_with_tokens_are_built(tmp_path: Path) -> None:
    (only_x,) = social_collectors(Settings(home=tmp_path, x_bearer_token="x", http_timeout=3))
    only_x.close()
    assert isinstance(only_x, XClient) and only_x.timeout == 3
    both = social_collectors(Settings(home=tmp_path, x_bearer_token="x", discord_bot_token="d"))
    for client in both:
        client.close()
    assert [type(c) for c in both] == [XClient, DiscordClient]


def test_tokens_come_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIKEY_DISCORD_BOT_TOKEN", "from-env")
    (client,) = social_collectors(Settings(home=tmp_path))
    client.close()
    assert isinstance(client, DiscordClient)
    assert client.base_url == "https://discord.com/api/v10"
