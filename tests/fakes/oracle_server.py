"""A fake Pyth Hermes, Pyth benchmarks and Switchboard crossbar on 127.0.0.1, for the oracle clients' tests.

It answers the routes the real services serve, by default with real payloads: ``/v2/updates/price/latest`` and
``/stream`` from the Hermes fixture in ``../shared/fixtures/pyth`` (plus any entries a test adds), the benchmarks
history shim, and crossbar's ``/simulate/<hashes>``. Each request first consumes the next scripted :class:`Script`
(status code, hang, malformed JSON, a custom body, an SSE event list), whatever its route; with none queued, the
route's default answers. Every request is recorded (path, query pairs, headers) so tests can assert what was sent.
aiohttp runs on its own loop in a daemon thread, so sync and async clients alike can talk to it.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest
from aiohttp import web

from tests.fakes.loopback import LoopbackServer

SHARED = Path(__file__).resolve().parents[3] / "shared"
PYTH_FIXTURES = SHARED / "fixtures" / "pyth"


def pyth_fixture(name: str) -> Any:
    """A JSON file of ``../shared/fixtures/pyth``; the test is skipped when the shared folder is absent."""
    path = PYTH_FIXTURES / name
    if not path.is_file():
        pytest.skip(f"shared fixture {path} is absent", allow_module_level=True)
    return json.loads(path.read_text())


def _key(feed_id: str) -> str:
    feed_id = feed_id.lower()
    return feed_id[2:] if feed_id.startswith("0x") else feed_id


@dataclass(frozen=True)
class Script:
    """What the server does with one request; build one with the class methods."""

    kind: Literal["json", "status", "hang", "malformed_json", "body", "sse"]
    status: int = 200
    payload: Any = None
    body: str = ""
    content_type: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)
    events: tuple[Any, ...] = ()
    event_delay: float = 0.0
    then: Literal["close", "hang", "abort"] = "close"

    @classmethod
    def json(cls, payload: Any, status: int = 200) -> Script:
        """A JSON answer (``payload`` is dumped as is)."""
        return cls("json", status=status, payload=payload)

    @classmethod
    def error(cls, status: int, body: str | None = None, retry_after: float | None = None) -> Script:
        """An HTTP error with a plain-text body, as Hermes sends (e.g. 404 ``Price ids not found: ...``)."""
        headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
        return cls("status", status=status, body=body if body is not None else f"fake error {status}",
                   content_type="text/plain", headers=headers)

    @classmethod
    def hang(cls) -> Script:
        """Accept the request and never answer; released (connection dropped) when the server stops."""
        return cls("hang")

    @classmethod
    def malformed_json(cls) -> Script:
        """A 200 whose JSON body is cut short."""
        return cls("malformed_json")

    @classmethod
    def raw(cls, body: str, status: int = 200, content_type: str = "application/json") -> Script:
        """Exactly ``body``, for payloads the other builders cannot express."""
        return cls("body", status=status, body=body, content_type=content_type)

    @classmethod
    def sse(cls, events: Sequence[Any], *, event_delay: float = 0.0,
            then: Literal["close", "hang", "abort"] = "close") -> Script:
        """Server-Sent Events: each dict/list is sent as ``data: <json>``, each str as ``data: <str>``, bytes
        verbatim (comments, multi-line data). ``then``: close cleanly, hang without closing, or drop the connection
        mid-chunk."""
        return cls("sse", events=tuple(events), event_delay=event_delay, then=then)


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server saw it."""

    path: str
    query: tuple[tuple[str, str], ...]
    headers: dict[str, str]  # names lower-cased

    def params(self, name: str) -> list[str]:
        """Every value of query parameter ``name``, in order (``ids[]`` repeats)."""
        return [v for k, v in self.query if k == name]


class FakeOracleServer(LoopbackServer):
    """Hermes + benchmarks + crossbar on one port. Script with :meth:`push`; read :attr:`requests`."""

    thread_name = "fake-oracles"

    def __init__(self) -> None:
        super().__init__()
        latest = pyth_fixture("hermes_latest_btc.json")
        self.binary = latest["binary"]
        self.prices: dict[str, dict[str, Any]] = {_key(e["id"]): e for e in latest["parsed"]}
        self.simulations: dict[str, list[Any]] = {}  # feed hash (normalised) -> crossbar results
        self.history: dict[str, Any] = {"s": "no_data"}  # default benchmarks answer
        self.requests: list[RecordedRequest] = []
        self._script: deque[Script] = deque()

    @property
    def base_url(self) -> str:
        return self.url

    def add_price(self, entry: dict[str, Any]) -> None:
        """Serve ``entry`` (a Hermes ``parsed`` item) for its feed id from now on."""
        self.prices[_key(entry["id"])] = entry

    def push(self, *scripts: Script) -> None:
        """Queue scripts; each request consumes the next one."""
        self._script.extend(scripts)

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/v2/updates/price/latest", self._latest)
        app.router.add_get("/v2/updates/price/stream", self._stream)
        app.router.add_get("/v1/shims/tradingview/history", self._history)
        app.router.add_get("/simulate/{hashes}", self._simulate)

    # --- request handling -----------------------------------------------------------------------------------------

    async def _handle(self, request: web.Request, default: Any) -> web.StreamResponse:
        self.requests.append(RecordedRequest(request.path, tuple(request.query.items()),
                                             {k.lower(): v for k, v in request.headers.items()}))
        script = self._script.popleft() if self._script else default
        if script.kind == "json":
            return web.json_response(script.payload, status=script.status)
        if script.kind in ("status", "body"):
            return web.Response(status=script.status, text=script.body, content_type=script.content_type,
                                headers=script.headers)
        if script.kind == "malformed_json":
            text = json.dumps({"binary": self.binary, "parsed": list(self.prices.values())})
            return web.Response(text=text[: len(text) // 2], content_type="application/json")
        if script.kind == "hang":
            await self._hang(request)
            return web.Response()
        return await self._send_events(request, script)

    async def _hang(self, request: web.Request) -> None:
        assert self.stopping is not None
        await self.stopping.wait()
        if request.transport is not None:
            request.transport.abort()

    async def _send_events(self, request: web.Request, script: Script) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await response.prepare(request)
        for event in script.events:
            if script.event_delay:
                await asyncio.sleep(script.event_delay)
            if isinstance(event, bytes):
                chunk = event
            else:
                chunk = f"data: {event if isinstance(event, str) else json.dumps(event)}\n\n".encode()
            await response.write(chunk)
        if script.then == "hang":
            await self._hang(request)
        elif script.then == "abort":
            await response.write(b"data: {\"parsed\": [")  # half an event, then the connection drops
            if request.transport is not None:
                request.transport.abort()
        else:
            await response.write_eof()
        return response

    def _update(self, request: web.Request) -> Script:
        """The default Hermes answer: the known entries for the requested ids, or Hermes's 404 for unknown ones."""
        ids = request.query.getall("ids[]", [])
        unknown = [i for i in ids if _key(i) not in self.prices]
        if unknown or not ids:
            return Script.error(404, f"Price ids not found: {', '.join(unknown)}")
        return Script.json({"binary": self.binary, "parsed": [self.prices[_key(i)] for i in ids]})

    async def _latest(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, self._update(request))

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        default = self._update(request)
        if default.kind == "json":
            default = Script.sse([default.payload])
        return await self._handle(request, default)

    async def _history(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, Script.json(self.history))

    async def _simulate(self, request: web.Request) -> web.StreamResponse:
        hashes = request.match_info["hashes"].split(",")
        unknown = [h for h in hashes if _key(h) not in self.simulations]
        default = Script.json({"error": f"feed not found: {', '.join(unknown)}"}, status=404) if unknown else \
            Script.json([{"feedHash": _key(h), "results": self.simulations[_key(h)], "receipts": []} for h in hashes])
        return await self._handle(request, default)
