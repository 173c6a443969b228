"""An aiohttp application served on 127.0.0.1 from its own thread and event loop, and free ports on 127.0.0.1.

The fake provider servers (LLM wire formats, oracles) that tests and benchmarks talk to are built on this, so that
synchronous code, ``asyncio.run`` callers and other threads can all reach them while they run.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import Self

from aiohttp import web


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listened on a moment ago: for a server a test starts, or one it expects to
    find refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class LoopbackServer:
    """Subclasses add their routes in :meth:`routes`; :attr:`stopping` is set when :meth:`stop` begins, so a handler
    that simulates a hang can wait on it and be released."""

    thread_name = "loopback-server"

    def __init__(self) -> None:
        self.port = 0
        self.stopping: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    @property
    def url(self) -> str:
        if not self.port:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> Self:
        """Bind an ephemeral loopback port and serve from a daemon thread; returns once connections are accepted."""
        self._loop = loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=loop.run_forever, name=self.thread_name, daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), loop).result(timeout=10)
        return self

    def stop(self) -> None:
        """Release hung requests, close every connection, the loop and the thread. Idempotent."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
        self._loop = self._thread = None

    async def _serve(self) -> None:
        self.stopping = asyncio.Event()
        app = web.Application()
        self.routes(app)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]

    async def _shutdown(self) -> None:
        assert self.stopping is not None and self._runner is not None
        self.stopping.set()
        await self._runner.cleanup()
