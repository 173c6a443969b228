"""A tiny Solana JSON-RPC server on 127.0.0.1 (``http.server`` in a thread) for the RPC transport's tests.

It speaks the five methods MIKEY uses in the real wire shapes (``context``/``value`` envelopes, UI transaction
errors such as ``{"InstructionError": [0, {"Custom": 6000}]}``, the ``-32002`` preflight failure with its logs).
Answers come from a queue of scripted replies per method (a JSON body, an HTTP status, a hang) and, when none is
queued, from a LiteSVM backend running the real program binary, so the broker can be driven end to end over HTTP.
Every request is recorded as ``(method, params)``.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from solders.clock import Clock
from solders.pubkey import Pubkey
from solders.signature import Signature
from solders.transaction import VersionedTransaction
from solders.transaction_metadata import FailedTransactionMetadata
from solders.transaction_status import (
    InstructionErrorCustom,
    TransactionErrorFieldless,
    TransactionErrorInstructionError,
)

CONTEXT = {"slot": 341_197_053, "apiVersion": "2.2.14"}


@dataclass
class Reply:
    """One scripted answer: a JSON-RPC ``result`` or ``error``, an HTTP status, or a hang of ``hang`` seconds
    (``after_backend``: let the backend act first, then hang: a request that executed but whose answer is lost)."""

    result: Any = None
    error: Any = None
    status: int = 200
    hang: float = 0.0
    after_backend: bool = False


def ui_error(err: Any) -> Any:
    """A solders transaction error in the JSON form the RPC returns."""
    if err is None:
        return None
    if isinstance(err, TransactionErrorFieldless):
        return str(err).rsplit(".", 1)[-1]
    if isinstance(err, TransactionErrorInstructionError):
        inner = err.err
        detail = {"Custom": inner.code} if isinstance(inner, InstructionErrorCustom) else str(inner).rsplit(".", 1)[-1]
        return {"InstructionError": [err.index, detail]}
    raise AssertionError(f"no UI form for {err!r}")


class FakeRpc:
    def __init__(self, backend: Any = None) -> None:
        self.backend = backend  # a LiteSVMTransport, for its LiteSVM and bootstrapped accounts
        self.requests: list[tuple[str, Any]] = []
        self.sent: list[str] = []  # signatures the backend executed
        self._replies: dict[str, deque[Reply]] = defaultdict(deque)
        self._statuses: dict[str, dict[str, Any]] = {}
        self._stop = threading.Event()
        self._server: ThreadingHTTPServer | None = None

    # Control -------------------------------------------------------------------------------------------------------
    def script(self, method: str, reply: Reply) -> None:
        self._replies[method].append(reply)

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeRpc:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                status, payload = fake._answer(body)
                raw = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, args=(0.02,), name="fake-solana-rpc", daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    # Answers -------------------------------------------------------------------------------------------------------
    def _answer(self, body: dict[str, Any]) -> tuple[int, Any]:
        method, params, ident = body["method"], body.get("params", []), body.get("id", 0)
        self.requests.append((method, params))
        reply = self._replies[method].popleft() if self._replies[method] else None
        if reply is not None and not reply.after_backend:
            if reply.hang:
                self._stop.wait(reply.hang)
            if reply.status != 200:
                return reply.status, {"message": "scripted"}
            if reply.error is not None:
                return 200, {"jsonrpc": "2.0", "error": reply.error, "id": ident}
            if reply.result is not None:
                return 200, {"jsonrpc": "2.0", "result": reply.result, "id": ident}
        assert self.backend is not None, f"no scripted reply for {method} and no backend"
        result = getattr(self, "_" + method)(params)
        if reply is not None and reply.after_backend:
            self._stop.wait(reply.hang)
        if isinstance(result, dict) and "__error__" in result:
            return 200, {"jsonrpc": "2.0", "error": result["__error__"], "id": ident}
        return 200, {"jsonrpc": "2.0", "result": result, "id": ident}

    def _tick(self) -> None:
        svm = self.backend.svm
        clock = svm.get_clock()
        svm.set_clock(Clock(clock.slot, clock.epoch_start_timestamp, clock.epoch, clock.leader_schedule_epoch,
                            int(time.time())))

    def _getLatestBlockhash(self, params: Any) -> Any:  # noqa: N802
        return {"context": CONTEXT, "value": {"blockhash": str(self.backend.svm.latest_blockhash()),
                                              "lastValidBlockHeight": 320_000_150}}

    def _simulate(self, tx: VersionedTransaction) -> dict[str, Any]:
        self._tick()
        result = self.backend.svm.simulate_transaction(tx)
        failed = isinstance(result, FailedTransactionMetadata)
        meta = result.meta()
        return {"err": ui_error(result.err()) if failed else None, "accounts": None, "logs": list(meta.logs()),
                "returnData": None, "unitsConsumed": meta.compute_units_consumed(), "innerInstructions": None,
                "replacementBlockhash": None, "loadedAccountsDataSize": 413, "fee": 5000}

    def _simulateTransaction(self, params: Any) -> Any:  # noqa: N802
        tx = VersionedTransaction.from_bytes(base64.b64decode(params[0]))
        return {"context": CONTEXT, "value": self._simulate(tx)}

    def _sendTransaction(self, params: Any) -> Any:  # noqa: N802
        tx = VersionedTransaction.from_bytes(base64.b64decode(params[0]))
        if not params[1].get("skipPreflight"):
            preflight = self._simulate(tx)
            if preflight["err"] is not None:
                return {"__error__": {"code": -32002, "message": f"Transaction simulation failed: {preflight['err']}",
                                      "data": preflight}}
        self._tick()
        result = self.backend.svm.send_transaction(tx)
        signature = str(tx.signatures[0])
        failed = isinstance(result, FailedTransactionMetadata)
        self._statuses[signature] = {"slot": CONTEXT["slot"], "confirmations": None,
                                     "err": ui_error(result.err()) if failed else None,
                                     "status": {"Err": ui_error(result.err())} if failed else {"Ok": None},
                                     "confirmationStatus": "finalized"}
        self.sent.append(signature)
        return signature

    def _getSignatureStatuses(self, params: Any) -> Any:  # noqa: N802
        return {"context": CONTEXT, "value": [self._statuses.get(str(Signature.from_string(s))) for s in params[0]]}

    def _getAccountInfo(self, params: Any) -> Any:  # noqa: N802
        account = self.backend.svm.get_account(Pubkey.from_string(params[0]))
        if account is None:
            return {"context": CONTEXT, "value": None}
        return {"context": CONTEXT, "value": {
            "data": [base64.b64encode(bytes(account.data)).decode(), "base64"], "executable": account.executable,
            "lamports": account.lamports, "owner": str(account.owner), "rentEpoch": 18446744073709551615,
            "space": len(account.data)}}
