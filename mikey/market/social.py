"""Posts from X (API v2 recent search) and Discord (channel messages), as symbol-tagged ``SocialPost`` objects.

Both are plain REST calls over httpx with the token in a header, so tests serve recorded responses from 127.0.0.1
and no SDK is needed. Every failure (bad token, rate limit, timeout, unexpected payload) is a ``FeedError`` whose
message names the platform and, for rate limits, when to retry. A platform without a token is simply not built
(``social_collectors``): no token is a choice, not an error.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import httpx
from pydantic import SecretStr, ValidationError

from mikey.domain import SocialPost
from mikey.errors import FeedError, InvalidInput
from mikey.market.http import OwnedHttpClient
from mikey.market.tagging import tag_symbols

if TYPE_CHECKING:
    from mikey.settings import Settings

logger = logging.getLogger(__name__)

X_TWEET_FIELDS = "created_at,public_metrics,author_id"
DEFAULT_X_QUERY = "($SOL OR $BTC OR $ETH OR solana OR bitcoin OR ethereum) -is:retweet lang:en"
"""A starting query for the markets MIKEY covers; retweets are left out because they repeat the original's text."""


def _secret(token: str | SecretStr) -> str:
    return token.get_secret_value() if isinstance(token, SecretStr) else token


def _parse_time(value: object, what: str) -> datetime:
    if not isinstance(value, str):
        raise ValueError(f"{what} is missing")
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError(f"{what} {value!r} has no timezone")
    return parsed.astimezone(UTC)


class _JsonApi(OwnedHttpClient):
    """The HTTP plumbing both platforms share: an owned-or-injected client, auth header, JSON decoding, and
    transport errors turned into ``FeedError`` naming the platform. Platform-specific statuses (401, 429) are
    mapped by the subclasses, since each platform says "retry later" differently."""

    platform_name = "API"

    def __init__(self, base_url: str, auth_header: str, timeout: float, client: httpx.Client | None) -> None:
        super().__init__(client, timeout=timeout)
        self.base_url = base_url.rstrip("/")
        self._auth_header = auth_header

    def _get(self, path: str, params: Mapping[str, str | int]) -> httpx.Response:
        url = f"{self.base_url}{path}"
        headers = {"Authorization": self._auth_header, "Accept": "application/json", "User-Agent": "mikey/0.1"}
        try:
            return self._client.get(url, params=dict(params), headers=headers, timeout=self.timeout)
        except httpx.TimeoutException as exc:
            raise FeedError(f"{self.platform_name} timed out after {self.timeout:g} s ({type(exc).__name__})") from exc
        except httpx.HTTPError as exc:
            raise FeedError(f"{self.platform_name} request failed: {exc or type(exc).__name__}") from exc

    def _json(self, resp: httpx.Response) -> Any:
        try:
            return resp.json()
        except ValueError as exc:
            snippet = resp.text[:80].replace("\n", " ")
            raise FeedError(
                f"{self.platform_name} returned malformed JSON (HTTP {resp.status_code}): {snippet!r}"
            ) from exc

    def _error_detail(self, resp: httpx.Response) -> str:
        """The most useful words of an error body, for the message; never the request's headers (the token)."""
        try:
            body = resp.json()
        except ValueError:
            return resp.text[:120].strip()
        if isinstance(body, dict):
            for key in ("detail", "message", "title"):
                if isinstance(body.get(key), str):
                    return body[key]
            errors = body.get("errors")
            if isinstance(errors, list) and errors and isinstance(errors[0], dict):
                return str(errors[0].get("message") or errors[0].get("detail") or "")
        return ""

    def _fail(self, resp: httpx.Response, hint: str = "") -> FeedError:
        detail = self._error_detail(resp)
        text = f"{self.platform_name} HTTP {resp.status_code} {resp.reason_phrase}".rstrip()
        if detail and detail != resp.reason_phrase:
            text += f": {detail}"
        return FeedError(f"{text}{'; ' + hint if hint else ''}")


class XClient(_JsonApi):
    """X API v2 recent search (the last 7 days of public posts), with app-only Bearer auth.

    After each search, ``newest_ids[query]`` holds the newest post id X reported (``meta.newest_id``); pass it as
    ``since_id`` next time to fetch only newer posts. It is left unchanged by a search that found nothing.
    """

    platform_name = "X API"

    def __init__(
        self,
        bearer_token: str | SecretStr,
        base_url: str = "https://api.x.com",
        timeout: float = 10.0,
        client: httpx.Client | None = None,
    ) -> None:
        super().__init__(base_url, f"Bearer {_secret(bearer_token)}", timeout, client)
        self.newest_ids: dict[str, str] = {}

    def recent_search(self, query: str, max_results: int = 10, since_id: str | None = None) -> list[SocialPost]:
        """Posts matching ``query``, newest first, as X returns them.

        Args:
            query: X search query, e.g. ``DEFAULT_X_QUERY``.
            max_results: 10 to 100, as the endpoint allows.
            since_id: Only posts newer than this id.

        Raises:
            InvalidInput: for ``max_results`` outside 10..100 or an empty query.
            FeedError: for a rejected token (401/403), a rate limit (429, saying when to retry), other HTTP errors,
                timeouts, and payloads that are not the documented shape.
        """
        if not query.strip():
            raise InvalidInput("X search query is empty")
        if not 10 <= max_results <= 100:
            raise InvalidInput(f"X recent search max_results must be 10..100, not {max_results}")
        params: dict[str, str | int] = {
            "query": query,
            "max_results": max_results,
            "tweet.fields": X_TWEET_FIELDS,
            "expansions": "author_id",
            "user.fields": "username",
        }
        if since_id:
            params["since_id"] = since_id
        resp = self._get("/2/tweets/search/recent", params)
        if resp.status_code == 429:
            raise self._fail(resp, _x_retry_hint(resp.headers.get("x-rate-limit-reset")))
        if resp.status_code in (401, 403):
            raise self._fail(resp, "check the bearer token (MIKEY_X_BEARER_TOKEN) and the app's access level")
        if resp.status_code >= 400:
            raise self._fail(resp)
        return self._posts(self._json(resp), query)

    def _posts(self, body: Any, query: str) -> list[SocialPost]:
        if not isinstance(body, dict):
            raise FeedError(f"X API returned {type(body).__name__}, expected a JSON object")
        tweets = body.get("data")
        if tweets is None:
            if body.get("errors"):
                raise FeedError(f"X API returned errors and no posts: {self._first_error(body)}")
            return []  # no matches: X omits "data" and reports meta.result_count = 0
        if not isinstance(tweets, list):
            raise FeedError("X API 'data' is not a list of posts")
        includes = body.get("includes")
        users = includes.get("users") if isinstance(includes, dict) else None
        users = users if isinstance(users, list) else []
        usernames = {u["id"]: u["username"] for u in users if isinstance(u, dict) and "id" in u and "username" in u}
        posts = [self._post(tweet, usernames) for tweet in tweets]
        meta = body.get("meta")
        if isinstance(meta, dict) and isinstance(meta.get("newest_id"), str):
            self.newest_ids[query] = meta["newest_id"]
        return posts

    def _post(self, tweet: Any, usernames: dict[str, str]) -> SocialPost:
        try:
            post_id, text = str(tweet["id"]), str(tweet["text"])
            author_id = str(tweet.get("author_id") or "")
            username = usernames.get(author_id)
            metrics = tweet.get("public_metrics") or {}
            return SocialPost(
                id=post_id,
                platform="x",
                author=username or author_id,
                text=text,
                created_at=_parse_time(tweet.get("created_at"), "created_at"),
                # Without the author's username, X's id-only permalink still opens the post.
                url=f"https://x.com/{username}/status/{post_id}" if username else f"https://x.com/i/web/status/{post_id}",
                symbols=tag_symbols(text),
                metrics={k: v for k, v in metrics.items() if isinstance(v, int) and not isinstance(v, bool)},
            )
        except (KeyError, TypeError, AttributeError, ValueError, ValidationError) as exc:
            raise FeedError(f"X API post is not the documented shape ({type(exc).__name__}: {exc})") from exc

    @staticmethod
    def _first_error(body: dict[str, Any]) -> str:
        first = body["errors"][0] if isinstance(body["errors"], list) else body["errors"]
        if isinstance(first, dict):
            return str(first.get("detail") or first.get("message") or first.get("title") or first)
        return str(first)


def _x_retry_hint(reset: str | None) -> str:
    """X says when its rate-limit window resets as a Unix time in ``x-rate-limit-reset``."""
    try:
        at = datetime.fromtimestamp(int(reset or ""), UTC)
    except (ValueError, OverflowError, OSError):
        return "retry later (no x-rate-limit-reset header)"
    wait = max(0, round((at - datetime.now(UTC)).total_seconds()))
    return f"retry after {at.isoformat(timespec='seconds')} (in {wait} s)"


class DiscordClient(_JsonApi):
    """Discord REST "Get Channel Messages" with a bot token.

    The bot needs the View Channel and Read Message History permissions, and the Message Content intent to see
    message text; without it Discord sends empty ``content``, and such messages are skipped (nothing to tag).
    After each call, ``newest_ids[channel_id]`` holds the newest message id seen; pass it as ``after`` next time.
    """

    platform_name = "Discord API"

    def __init__(
        self,
        bot_token: str | SecretStr,
        base_url: str = "https://discord.com/api/v10",
        timeout: float = 10.0,
        client: httpx.Client | None = None,
    ) -> None:
        super().__init__(base_url, f"Bot {_secret(bot_token)}", timeout, client)
        self.newest_ids: dict[str, str] = {}

    def channel_messages(self, channel_id: str, after: str | None = None, limit: int = 50) -> list[SocialPost]:
        """Messages of one channel, newest first as Discord returns them.

        Args:
            channel_id: The channel's snowflake id.
            after: Only messages newer than this message id.
            limit: 1 to 100, as the endpoint allows.

        Raises:
            InvalidInput: for ``limit`` outside 1..100 or a channel id that is not a snowflake.
            FeedError: for a rejected token (401), missing access (403), unknown channel (404), a rate limit (429,
                saying when to retry), other HTTP errors, timeouts, and payloads that are not message lists.
        """
        if not channel_id.isdigit():
            raise InvalidInput(f"Discord channel id must be a snowflake (digits), not {channel_id!r}")
        if not 1 <= limit <= 100:
            raise InvalidInput(f"Discord channel messages limit must be 1..100, not {limit}")
        params: dict[str, str | int] = {"limit": limit}
        if after:
            params["after"] = after
        resp = self._get(f"/channels/{channel_id}/messages", params)
        if resp.status_code == 429:
            raise self._fail(resp, _discord_retry_hint(resp))
        if resp.status_code == 401:
            raise self._fail(resp, "check the bot token (MIKEY_DISCORD_BOT_TOKEN)")
        if resp.status_code == 403:
            raise self._fail(resp, f"the bot cannot read channel {channel_id} (View Channel, Read Message History)")
        if resp.status_code >= 400:
            raise self._fail(resp, f"channel {channel_id}")
        body = self._json(resp)
        if not isinstance(body, list):
            raise FeedError(f"Discord API returned {type(body).__name__}, expected a list of messages")
        posts = [post for post in (self._post(message, channel_id) for message in body) if post is not None]
        ids = [str(m["id"]) for m in body if isinstance(m, dict) and str(m.get("id", "")).isdigit()]
        if ids:
            self.newest_ids[channel_id] = max(ids, key=int)
        return posts

    def _post(self, message: Any, channel_id: str) -> SocialPost | None:
        try:
            text = message.get("content") or ""
            if not text.strip():
                return None
            post_id = str(message["id"])
            guild_id = message.get("guild_id")
            reactions = message.get("reactions") or []
            return SocialPost(
                id=post_id,
                platform="discord",
                author=str(message["author"]["username"]),
                text=text,
                created_at=_parse_time(message.get("timestamp"), "timestamp"),
                url=f"https://discord.com/channels/{guild_id}/{channel_id}/{post_id}" if guild_id else None,
                symbols=tag_symbols(text),
                metrics={"reactions": sum(int(r.get("count", 0)) for r in reactions)},
            )
        except (KeyError, TypeError, AttributeError, ValueError, ValidationError) as exc:
            raise FeedError(f"Discord API message is not the documented shape ({type(exc).__name__}: {exc})") from exc


def _discord_retry_hint(resp: httpx.Response) -> str:
    """Discord says how long to wait as ``retry_after`` seconds in the JSON body, and in the Retry-After header."""
    try:
        body = resp.json()
    except ValueError:
        body = None
    scope = " (global limit)" if isinstance(body, dict) and body.get("global") is True else ""
    for candidate in (body.get("retry_after") if isinstance(body, dict) else None, resp.headers.get("retry-after")):
        try:
            seconds = float(candidate)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            continue
        return f"retry after {seconds:g} s{scope}"
    return f"retry later{scope} (no retry_after given)"


def social_collectors(settings: Settings) -> list[XClient | DiscordClient]:
    """The social clients whose tokens are set; a platform without a token is off, silently.

    Discord channels to read come from ``settings.discord_channel_ids``; the caller owns the clients and closes them.
    """
    collectors: list[XClient | DiscordClient] = []
    if settings.x_bearer_token is not None and settings.x_bearer_token.get_secret_value():
        collectors.append(XClient(settings.x_bearer_token, timeout=settings.http_timeout))
    if settings.discord_bot_token is not None and settings.discord_bot_token.get_secret_value():
        collectors.append(DiscordClient(settings.discord_bot_token, timeout=settings.http_timeout))
    return collectors
