"""The HTTP client lifecycle every market-data client shares: use a given ``httpx.Client`` or own one."""

from __future__ import annotations

from typing import Self

import httpx


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
