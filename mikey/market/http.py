"""HTTP as the market-data clients speak it: the client lifecycle they all share (use a given ``httpx.Client`` or
own one), and the JSON GET of the oracle clients (Pyth Hermes and benchmarks, Switchboard crossbar), whose every
failure is a typed error naming the service."""

from __future__ import annotations

from typing import Any, Self

import httpx
from pydantic import SecretStr

from mikey.errors import ConfigError, FeedError
from mikey.market.normalize import parse_json

ApiKey = str | SecretStr | None


class OwnedHttpClient:
    """Holds ``self._client``: the one passed in (tests, shared pools; never closed here) or one of its own, closed by
    ``close`` or at the end of a ``with`` block."""

    def __init__(self, client: httpx.Client | None, *, timeout: float, follow_redirects: bool = False) -> None:
        self.timeout = timeout
        self._owns_client = client is None
        self._client = client if client is not None else httpx.Client(timeout=timeout,
                                                                      follow_redirects=follow_redirects)

    def close(self) -> None:
        """Close the HTTP client if this object created it."""
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def auth_headers(api_key: ApiKey, accept: str = "application/json") -> dict[str, str]:
    """Request headers; a bearer token only when a key is set (an empty key counts as none)."""
    key = api_key.get_secret_value() if isinstance(api_key, SecretStr) else api_key
    return {"Accept": accept, **({"Authorization": f"Bearer {key}"} if key else {})}


def status_error(source: str, response: httpx.Response) -> FeedError:
    """A ``FeedError`` for a non-200 answer: the status, what it usually means, and the start of the body."""
    code = response.status_code
    hint = ""
    if code in (401, 403):
        hint = " (API key missing or refused)"
    elif code == 429:
        retry = response.headers.get("Retry-After")
        hint = f" (rate limited; retry after {retry}s)" if retry else " (rate limited)"
    body = " ".join(response.text.split())[:200]
    return FeedError(f"{source} answered HTTP {code} {response.reason_phrase}{hint}" + (f": {body}" if body else ""))


def transport_error(source: str, exc: Exception, timeout: float) -> Exception:
    """The typed error for an exception httpx raised while talking to ``source``."""
    if isinstance(exc, httpx.TimeoutException):
        return FeedError(f"{source} timed out after {timeout:g}s ({type(exc).__name__})")
    if isinstance(exc, httpx.InvalidURL | httpx.UnsupportedProtocol):
        return ConfigError(f"{source} URL is invalid: {exc}")
    return FeedError(f"{source} request failed: {type(exc).__name__}: {exc}")


def get_json(client: httpx.Client, url: str, *, source: str, params: Any, headers: dict[str, str],
             timeout: float) -> Any:
    """GET ``url`` and parse its JSON body exactly; every failure is a ``FeedError`` naming ``source``."""
    try:
        response = client.get(url, params=params, headers=headers, timeout=timeout)
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise transport_error(source, exc, timeout) from exc
    if response.status_code != 200:
        raise status_error(source, response)
    return parse_json(response.content, source)
