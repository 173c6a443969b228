"""A webhook receiver on 127.0.0.1: records every POST (headers and the raw body) and answers with scripted statuses.

``statuses`` is consumed one per request (an int status, or ``"hang"`` to hold the request until the server stops);
with none left, it answers 200. ``received`` keeps every request in order, so tests can check how many attempts
arrived and verify each signature over the exact bytes sent.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.fakes.loopback import LoopbackServer


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class WebhookServer(LoopbackServer):
    thread_name = "fake-webhook"

    def __init__(self, *statuses: int | str) -> None:
        super().__init__()
        self.statuses: deque[int | str] = deque(statuses)
        self.received: list[Received] = []

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/{tail:.*}", self._hook)

    async def _hook(self, request: web.Request) -> web.Response:
        self.received.append(Received(request.path, dict(request.headers), await request.read()))
        status = self.statuses.popleft() if self.statuses else 200
        if status == "hang":
            assert self.stopping is not None
            await self.stopping.wait()
            await asyncio.sleep(0)
            status = 200
        return web.json_response({"ok": status == 200}, status=int(status))
