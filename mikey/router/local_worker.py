"""SmolLM2 in a worker process, so that the local model cannot take MIKEY down.

llama.cpp is native code: a bad CPU feature, a corrupt weights file or an out-of-memory kills the process it runs in.
So the model runs in a child process (``python -m mikey.router.local_worker``) that speaks JSON lines over a pipe:

- the parent writes one request per line on the child's stdin: ``{"id": 3, "op": "chat" | "stream" | "prefill",
  "messages": [...], "max_tokens": 160, "schema": {...} | null}`` (a prefill only reads the prompt, ahead of the call
  that will send it);
- the child answers on its own protocol descriptor (its stdout, which native code cannot write to: fd 1 is pointed
  at stderr) with ``{"event": "ready"}`` once the weights are loaded, then per request ``{"id": 3, "event": "token",
  "text": ...}`` pieces (streams only), and ``{"id": 3, "event": "done", "text": ..., "prompt_tokens": n,
  "completion_tokens": n}`` or ``{"id": 3, "event": "error", "message": ...}``.

The parent side (:class:`LocalWorker`) starts the child on first use, or ahead of it with :meth:`LocalWorker.start`
(a chat or ``mikey serve`` warms it while the rest loads). When the child dies (a signal, an exit) or stops answering
within the timeouts, the call fails with :class:`WorkerFailed`, the child is killed, and the worker stays down for
``restart_after`` seconds (calls fail at once meanwhile, so the router falls back) before a new child starts in the
background. The child exits by itself when the parent goes away (its stdin closes). This module never imports
litellm or llama_cpp in the parent.
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any


class WorkerFailed(RuntimeError):
    """The worker process died, hung, or is down waiting to restart; ``reason`` says which, without model text."""

    def __init__(self, reason: str, *, timed_out: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.timed_out = timed_out


class WorkerError(RuntimeError):
    """The worker is alive but refused one request (e.g. a prompt longer than its context)."""


@dataclass(frozen=True)
class WorkerConfig:
    path: Path
    threads: int
    context: int
    load_timeout: float = 60.0
    first_token_timeout: float = 20.0
    request_timeout: float = 60.0
    restart_after: float = 30.0
    memory_limit_mb: int | None = None


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "stopped answering"
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


class _Process:
    """One child process and the thread that reads its events into a queue (``None`` marks the end of output)."""

    def __init__(self, config: WorkerConfig) -> None:
        limit = config.memory_limit_mb
        args = [sys.executable, "-m", "mikey.router.local_worker", str(config.path), str(config.threads),
                str(config.context)]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.popen = subprocess.Popen(
            args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
            preexec_fn=(lambda: _limit_memory(limit)) if limit else None, close_fds=True,
        )
        self.events: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.ready = False
        self._reader = threading.Thread(target=self._read, args=(self.popen.stdout,), daemon=True,
                                        name="mikey-local-worker-reader")
        self._reader.start()

    def _read(self, stream: IO[bytes]) -> None:
        try:
            for line in stream:
                try:
                    self.events.put(json.loads(line))
                except ValueError:
                    continue  # never trust a torn line; the request that wanted it times out or sees the exit
        finally:
            self.events.put(None)

    def send(self, request: dict[str, Any]) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write(json.dumps(request).encode() + b"\n")
        self.popen.stdin.flush()

    def kill(self) -> int | None:
        if self.popen.poll() is None:
            self.popen.kill()
        try:
            code = self.popen.wait(timeout=5)
        except subprocess.TimeoutExpired:
            code = None
        for pipe in (self.popen.stdin, self.popen.stdout):
            try:
                if pipe is not None:
                    pipe.close()
            except OSError:
                pass
        return code


def _limit_memory(megabytes: int) -> None:  # runs in the child, before exec
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (megabytes * 2**20, megabytes * 2**20))


class LocalWorker:
    """The parent's handle on the model worker: thread-safe, one request at a time (like the model itself)."""

    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        self._proc: _Process | None = None
        self._lock = threading.RLock()  # guards _proc and the restart state
        # The one request in flight. A plain lock: a stream may be read (and so released) from another thread.
        self._busy = threading.Lock()
        self._next_id = 0
        self._down_until = 0.0
        self._down_reason = ""
        self._timer: threading.Timer | None = None
        self.starts = 0
        self.failures = 0
        self._closed = False

    # -- lifecycle ------------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the child if none runs and the worker is not down; returns at once (loading goes on in the child)."""
        with self._lock:
            if self._closed or (self._proc is not None and self._proc.popen.poll() is None):
                return
            if time.monotonic() < self._down_until:
                return
            self._proc = _Process(self.config)
            self.starts += 1

    @property
    def pid(self) -> int | None:
        proc = self._proc
        return proc.popen.pid if proc is not None and proc.popen.poll() is None else None

    def close(self) -> None:
        """Stop the child for good (no restart); the process's next ``shared`` call makes a new worker."""
        with self._lock:
            self._closed = True
            if self._timer is not None:
                self._timer.cancel()
            proc, self._proc = self._proc, None
        if proc is not None:
            proc.kill()
        with _SHARED_LOCK:
            if _SHARED.get(self.config) is self:
                del _SHARED[self.config]

    def _fail(self, proc: _Process, what: str, *, timed_out: bool = False) -> WorkerFailed:
        """Kill the child, stay down for ``restart_after`` seconds, then start a fresh child in the background."""
        code = proc.kill()
        reason = f"the local model worker {what if timed_out else _describe_exit(code)}"
        self.failures += 1
        with self._lock:
            if self._proc is proc:
                self._proc = None
            self._down_until = time.monotonic() + self.config.restart_after
            self._down_reason = reason
            if self._timer is not None:
                self._timer.cancel()
            if not self._closed:
                self._timer = threading.Timer(self.config.restart_after, self.start)
                self._timer.daemon = True
                self._timer.start()
        return WorkerFailed(reason, timed_out=timed_out)

    def _running(self) -> _Process:
        with self._lock:
            if self._closed:
                raise WorkerFailed("the local model worker was closed")
            left = self._down_until - time.monotonic()
            if left > 0:
                raise WorkerFailed(f"{self._down_reason}; it restarts in {left:.0f} s")
            if self._proc is not None and self._proc.popen.poll() is not None:
                # It died while nobody was waiting on it (idle, or reading a prompt ahead): a failure like any other,
                # not a silent restart.
                raise self._fail(self._proc, "")
            self.start()
            assert self._proc is not None
            return self._proc

    # -- requests -------------------------------------------------------------------------------------------------
    def _events(self, request: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Send one request and yield its events until ``done`` (inclusive); the worker is busy throughout."""
        with self._busy:
            proc = self._running()
            self._next_id += 1
            ident = self._next_id
            try:
                proc.send({**request, "id": ident})
            except OSError as exc:
                raise self._fail(proc, "") from exc
            # Until the weights are loaded the load timeout applies; from then on, the call's own timeouts.
            started = time.monotonic()
            wait = self.config.first_token_timeout
            while True:
                if proc.ready:
                    timeout = min(wait, self.config.request_timeout - (time.monotonic() - started))
                else:
                    timeout = self.config.load_timeout - (time.monotonic() - started)
                try:
                    event = proc.events.get(timeout=max(timeout, 0.0))
                except queue.Empty:
                    what = "answer" if proc.ready else "load the model"
                    raise self._fail(proc, f"did not {what} within {time.monotonic() - started:.0f} s",
                                     timed_out=True) from None
                if event is None:
                    raise self._fail(proc, "")
                kind = event.get("event")
                if kind == "ready":
                    proc.ready = True
                    started = time.monotonic()
                    continue
                if kind == "fatal":  # the child could not load the model: it exits
                    raise self._fail(proc, "")
                if event.get("id") != ident:
                    continue  # the tail of a request whose reader went away
                if kind == "error":
                    raise WorkerError(str(event.get("message") or "the local model refused the request"))
                wait = self.config.request_timeout  # after the first piece, the whole-call timeout bounds the rest
                yield event
                if kind == "done":
                    return

    def prefill(self, messages: list[dict[str, Any]]) -> bool:
        """Have the worker read ``messages`` now, without waiting for it: a request for them that follows finds the
        prompt already in the model's cache (llama.cpp reuses the longest common prefix) and only decodes. Used while
        the rest of MIKEY is still starting; False when the worker is down or busy (nothing is sent)."""
        if not self._busy.acquire(blocking=False):
            return False
        try:
            try:
                proc = self._running()
            except WorkerFailed:
                return False
            self._next_id += 1
            try:
                proc.send({"op": "prefill", "id": self._next_id, "messages": _clean(messages)})
            except OSError:
                return False
            return True  # its "done" event is skipped by the next request, as any other id's
        finally:
            self._busy.release()

    def chat(self, messages: list[dict[str, Any]], *, max_tokens: int,
             schema: dict[str, Any] | None = None) -> tuple[str, int, int]:
        """Greedy completion; with ``schema``, decoded under llama.cpp's JSON-schema grammar."""
        for event in self._events({"op": "chat", "messages": _clean(messages), "max_tokens": max_tokens,
                                   "schema": schema}):
            if event["event"] == "done":
                return str(event["text"]), int(event["prompt_tokens"]), int(event["completion_tokens"])
        raise AssertionError("unreachable: _events ends with done or raises")

    def stream(self, messages: list[dict[str, Any]], *, max_tokens: int) -> Iterator[str]:
        """Pieces as the worker decodes them."""
        for event in self._events({"op": "stream", "messages": _clean(messages), "max_tokens": max_tokens}):
            if event["event"] == "token":
                yield str(event["text"])


def _clean(messages: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [{"role": m["role"], "content": str(m.get("content") or "")} for m in messages]


_SHARED: dict[WorkerConfig, LocalWorker] = {}
_SHARED_LOCK = threading.Lock()


def shared(config: WorkerConfig) -> LocalWorker:
    """The process's worker for ``config`` (one model process per configuration, however many routers use it)."""
    with _SHARED_LOCK:
        worker = _SHARED.get(config)
        if worker is None:
            if not _SHARED:
                atexit.register(close_all)
            worker = _SHARED[config] = LocalWorker(config)
        return worker


def close_all() -> None:
    """Stop every worker this process started (also done at exit: the children see their stdin close)."""
    with _SHARED_LOCK:
        workers = list(_SHARED.values())
        _SHARED.clear()
    for worker in workers:
        worker.close()


# -- the child ----------------------------------------------------------------------------------------------------
class _Model:
    """A loaded GGUF chat model (child side). Greedy decoding: the same prompt gets the same words."""

    def __init__(self, path: Path, *, threads: int, context: int) -> None:
        from llama_cpp import Llama

        self._llm = Llama(model_path=str(path), n_ctx=context, n_threads=threads, verbose=False, seed=0)

    def chat(self, messages: list[dict[str, Any]], max_tokens: int,
             schema: dict[str, Any] | None) -> tuple[str, int, int]:
        response_format = None if schema is None else {"type": "json_object", "schema": schema}
        out = self._llm.create_chat_completion(messages=messages, max_tokens=max_tokens, temperature=0.0, seed=0,
                                               response_format=response_format)
        usage = out.get("usage") or {}
        text = (out["choices"][0]["message"].get("content") or "").strip()
        return text, int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))

    def stream(self, messages: list[dict[str, Any]], max_tokens: int) -> Iterator[str]:
        for chunk in self._llm.create_chat_completion(messages=messages, max_tokens=max_tokens, temperature=0.0,
                                                      seed=0, stream=True):
            piece = chunk["choices"][0]["delta"].get("content")
            if piece:
                yield piece

    def prefill(self, messages: list[dict[str, Any]]) -> None:
        """Evaluate the prompt (one token decoded) so that its tokens stay in the context for the next request."""
        self._llm.create_chat_completion(messages=messages, max_tokens=1, temperature=0.0, seed=0)

    def count(self, messages: list[dict[str, Any]]) -> int:
        text = "\n".join(m["content"] for m in messages)
        return len(self._llm.tokenize(text.encode(), add_bos=False))


def serve(path: Path, threads: int, context: int) -> int:
    """The child's loop: load, say ready, answer requests until stdin closes."""
    out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)  # anything native code prints goes to stderr, never into the protocol
    sys.stdout = sys.stderr

    def emit(event: dict[str, Any]) -> None:
        out.write(json.dumps(event).encode() + b"\n")

    try:
        model = _Model(path, threads=threads, context=context)
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which treats the worker as failed
        emit({"event": "fatal", "message": f"{type(exc).__name__}: cannot load {path.name}"})
        return 1
    emit({"event": "ready", "pid": os.getpid()})
    for line in sys.stdin.buffer:
        request = json.loads(line)
        ident = request.get("id")
        try:
            if request["op"] == "prefill":
                model.prefill(request["messages"])
                emit({"id": ident, "event": "done", "text": "", "prompt_tokens": 0, "completion_tokens": 0})
            elif request["op"] == "stream":
                produced = 0
                pieces = []
                for piece in model.stream(request["messages"], int(request["max_tokens"])):
                    produced += 1
                    pieces.append(piece)
                    emit({"id": ident, "event": "token", "text": piece})
                emit({"id": ident, "event": "done", "text": "".join(pieces).strip(),
                      "prompt_tokens": model.count(request["messages"]), "completion_tokens": produced})
            else:
                text, prompt_tokens, completion_tokens = model.chat(request["messages"], int(request["max_tokens"]),
                                                                    request.get("schema"))
                emit({"id": ident, "event": "done", "text": text, "prompt_tokens": prompt_tokens,
                      "completion_tokens": completion_tokens})
        except ValueError as exc:  # llama-cpp-python's refusals (prompt longer than the context, bad grammar)
            emit({"id": ident, "event": "error", "message": str(exc).splitlines()[0][:200]})
    return 0


if __name__ == "__main__":
    sys.exit(serve(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])))
