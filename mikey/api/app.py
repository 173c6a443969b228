"""The FastAPI app: ``POST /v1/risk/assess``, ``GET /healthz`` and the chat (``POST /v1/chat``, ``POST
/v1/chat/stream`` as Server-Sent Events, ``GET /v1/chat/{thread_id}``; see ``mikey/api/chat.py``), built by
``create_app``. The chat service is built by the first chat request, so the risk endpoint starts as fast as before.

The lifespan is the composition root: it builds the settings, the price feed and a per-market cache of daily closes
once, so a request never reads a CSV or calls the feed for history (a live feed's entries are reloaded at most every
``LIVE_HISTORY_MAX_AGE`` seconds). Endpoints receive them, with the trader's limits and tier tables, as one
``RiskService`` through ``Depends(get_risk_service)``; tests replace it with ``app.dependency_overrides``.

Errors: one handler maps the ``MikeyError`` tree to HTTP codes (``STATUS``), and request validation errors become 422.
Both answer ``{"error": <kind>, "detail": [{"field": "size", "reason": "...", "type": "..."}]}``, and so do HTTP
errors (404, 405, ...; a body that is not UTF-8 is invalid JSON, 422, on every endpoint). A position that breaks a
risk limit is not an error: the assessment comes back with 200 and the failed checks in ``checks``.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from mikey.api.chat import LazyChatService
from mikey.api.chat import router as chat_router
from mikey.domain import PositionInput, RiskAssessment
from mikey.errors import (
    ApprovalRequired,
    BudgetExceeded,
    ConfigError,
    DataUnavailable,
    FeedError,
    InvalidInput,
    InvalidPrice,
    MikeyError,
    ProviderError,
    RiskLimitExceeded,
    StalePrice,
    ToolError,
    UnknownSymbol,
)
from mikey.market import symbols
from mikey.market.feed import PriceFeed
from mikey.risk.checks import RiskLimits
from mikey.risk.liquidation import MarginTier
from mikey.settings import Settings, get_settings
from mikey.tools.risk import HISTORY_BARS, MarketHistory, assess_with_history, history_from_feed

log = logging.getLogger(__name__)

LIVE_HISTORY_MAX_AGE = 60.0
"""Seconds a live feed's cached history (and the price with it) is served before it is reloaded."""

STATUS: dict[type[MikeyError], int] = {
    UnknownSymbol: 422,  # a market we do not cover is a bad request field, not missing data
    InvalidInput: 422,
    StalePrice: 503,
    FeedError: 503,
    InvalidPrice: 503,
    DataUnavailable: 404,
    ProviderError: 502,
    BudgetExceeded: 429,
    RiskLimitExceeded: 409,  # never raised by an assessment: there, a breached limit is a failed check
    ApprovalRequired: 403,
    ToolError: 500,
    ConfigError: 500,
    MikeyError: 500,
}


class HistoryCache:
    """Daily closes per market, loaded from the feed on first use and kept (read-only) for every later request."""

    def __init__(self, feed: PriceFeed, *, bars: int | None = HISTORY_BARS, max_age: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.feed = feed
        self.bars = bars
        self.max_age = max_age
        self._clock = clock
        self._entries: dict[str, tuple[float, MarketHistory]] = {}
        self._lock = threading.Lock()

    def get(self, market: str) -> MarketHistory | None:
        """The cached history of ``market`` if it is loaded and fresh, else None (then call ``load``)."""
        entry = self._entries.get(market)
        if entry is None or (self.max_age is not None and self._clock() - entry[0] > self.max_age):
            return None
        return entry[1]

    def load(self, market: str) -> MarketHistory:
        """Read ``market``'s history from the feed (blocking) unless another caller just did."""
        with self._lock:
            if (fresh := self.get(market)) is not None:
                return fresh
            history = history_from_feed(self.feed, market, bars=self.bars)
            self._entries[market] = (self._clock(), history)
            return history

    def put(self, history: MarketHistory) -> None:
        """Serve ``history`` for its market from now on (e.g. history read from a CSV)."""
        with self._lock:
            self._entries[history.symbol] = (self._clock(), history)

    def preload(self) -> None:
        """Load every market of the feed; a market that fails is logged and tried again by its first request."""
        for market in self.feed.symbols():
            try:
                self.load(market)
            except MikeyError as exc:
                log.warning("risk history for %s not loaded at start-up: %s", market, exc)

    def loaded(self) -> dict[str, MarketHistory]:
        return {market: history for market, (_, history) in self._entries.items()}


class RiskService:
    """Everything an assessment needs besides the position, built once by the lifespan: the history cache and the
    trader's limits and tier tables (None: the engine's defaults)."""

    def __init__(self, history: HistoryCache, *, limits: RiskLimits | None = None,
                 tiers: Mapping[str, Sequence[MarginTier]] | None = None) -> None:
        self.history = history
        self.limits = limits
        self.tiers = tiers

    async def assess(self, position: PositionInput) -> RiskAssessment:
        market = symbols.resolve(position.market)
        history = self.history.get(market) or await run_in_threadpool(self.history.load, market)
        # The engine is numpy over ~365 closes, a fraction of a millisecond: cheaper inline than a thread hop.
        return assess_with_history(position, history, limits=self.limits, tiers=self.tiers)


def create_app(settings: Settings | None = None) -> FastAPI:
    """The API over ``settings`` (default: ``get_settings()``, read when the app starts)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        from mikey.market.feeds import open_feed

        config = settings if settings is not None else get_settings()
        feed = open_feed(config)
        cache = HistoryCache(feed, max_age=None if feed.name == "replay" else LIVE_HISTORY_MAX_AGE)
        await run_in_threadpool(cache.preload)
        chat = LazyChatService(config, feed)  # built by the first chat request
        try:
            yield {"risk": RiskService(cache), "chat": chat}
        finally:
            chat.close()
            close = getattr(feed, "close", None)
            if callable(close):
                close()

    app = FastAPI(title="MIKEY", version="1", lifespan=lifespan,
                  summary="Risk assessment of perpetual positions and grounded market chat: numbers computed by code.")
    app.add_exception_handler(MikeyError, mikey_error_handler)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, validation_error_handler)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, http_error_handler)  # type: ignore[arg-type]
    app.post("/v1/risk/assess", response_model=RiskAssessment, responses=_ERROR_RESPONSES, openapi_extra=_REQUEST_BODY,
             summary="Assess the risk of a perpetual position")(assess_risk)
    app.get("/healthz", summary="Liveness, with the markets whose history is loaded")(healthz)
    app.include_router(chat_router)
    return app


# The one dependency: what the lifespan built, looked up per request; tests override it. It is ``async def``
# because FastAPI runs a plain ``def`` dependency in its thread pool, a thread hop per request.

async def get_risk_service(request: Request) -> RiskService:
    return request.state.risk


# Endpoints -------------------------------------------------------------------------------------------------------

async def assess_risk(request: Request, risk: Annotated[RiskService, Depends(get_risk_service)]) -> Response:
    """Liquidation price and distance, margin ratio, VaR/CVaR, volatility, drawdown, score with its factors,
    recommended maximum size, pre-trade checks and alerts. ``returns``, when given, replace the market's history."""
    # The body goes straight from bytes through pydantic's JSON parser rather than a FastAPI body parameter: no
    # json.loads, no intermediate dict, no body machinery (a sixth of the in-app time), the same pydantic errors for
    # the 422, and NaN or Infinity refused by ``allow_inf_nan=False``. ``_REQUEST_BODY`` still documents the schema.
    try:
        position = PositionInput.model_validate_json(await request.body())
    except ValidationError as exc:
        return _invalid(exc.errors(include_url=False, include_input=False))
    result = await risk.assess(position)
    return Response(result.model_dump_json(), media_type="application/json")


async def healthz(risk: Annotated[RiskService, Depends(get_risk_service)]) -> dict[str, Any]:
    """``ok`` with the feed and, per loaded market, its bar count, as-of time and price."""
    markets = {m: {"bars": len(h.closes), "as_of": h.as_of.isoformat(), "price": h.price}
               for m, h in risk.history.loaded().items()}
    return {"status": "ok", "feed": risk.history.feed.name, "markets": markets}


# Errors ------------------------------------------------------------------------------------------------------------

def status_for(exc: MikeyError) -> int:
    """HTTP status of a MIKEY error: that of its nearest class in ``STATUS``."""
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]  # type: ignore[index]
    return 500


_FIELD_WORD = re.compile(r"\b(" + "|".join(sorted(PositionInput.model_fields, key=len, reverse=True)) + r")\b")


def error_field(exc: MikeyError) -> str | None:
    """The request field an error is about: ``market`` for an unknown market, the error's own ``field`` if it has
    one, else the first position field its message names (the engine's messages start from the field at fault)."""
    if isinstance(exc, UnknownSymbol):
        return "market"
    if (field := getattr(exc, "field", None)) is not None:
        return str(field)
    if isinstance(exc, InvalidInput) and (found := _FIELD_WORD.search(str(exc))):
        return found.group(1)
    return None


async def mikey_error_handler(request: Request, exc: MikeyError) -> JSONResponse:
    field = error_field(exc)
    issue = {"field": field, "reason": str(exc), "type": type(exc).__name__}
    return JSONResponse({"error": type(exc).__name__, "detail": [issue]}, status_code=status_for(exc))


async def validation_error_handler(request: Request, exc: RequestValidationError) -> JSONResponse:
    return _invalid(exc.errors())


async def http_error_handler(request: Request, exc: HTTPException) -> Response:
    if isinstance(exc.__cause__, UnicodeDecodeError):  # FastAPI's 400 "error parsing the body": bytes, not JSON text
        bad = exc.__cause__
        reason = f"the body is not UTF-8 text (byte {bad.start} is {bad.object[bad.start]:#04x})"
        return _invalid([{"type": "json_invalid", "loc": ("body",), "ctx": {"error": reason}}])
    if exc.status_code in (204, 304):  # no body allowed
        return Response(status_code=exc.status_code, headers=exc.headers)
    issue = {"field": None, "reason": str(exc.detail), "type": f"http_{exc.status_code}"}
    return JSONResponse({"error": type(exc).__name__, "detail": [issue]}, status_code=exc.status_code,
                        headers=exc.headers)


def _invalid(errors: Sequence[Any]) -> JSONResponse:
    # The offending input is not echoed: it may be NaN, which JSON cannot carry back.
    return JSONResponse({"error": "ValidationError", "detail": [_issue(e) for e in errors]}, status_code=422)


def _issue(error: dict[str, Any]) -> dict[str, Any]:
    loc = list(error.get("loc", ()))
    if loc and loc[0] in ("body", "query", "path", "header", "cookie"):
        loc = loc[1:]
    if error.get("type") == "json_invalid":
        where = f" at character {loc[0]}" if loc else ""
        return {"field": "body", "reason": f"invalid JSON{where}: {error.get('ctx', {}).get('error', '')}".rstrip(": "),
                "type": "json_invalid"}
    return {"field": ".".join(str(part) for part in loc) or "body", "reason": error.get("msg", "invalid"),
            "type": error.get("type", "value_error")}


_ERROR_BODY = {"content": {"application/json": {"example": {
    "error": "ValidationError", "detail": [{"field": "size", "reason": "Input should be greater than 0",
                                            "type": "greater_than"}]}}}}
_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    422: {"description": "Invalid position: each field with its reason", **_ERROR_BODY},
    404: {"description": "No market data for the request"},
    503: {"description": "The market-data source failed or its price is stale"},
}
_REQUEST_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": PositionInput.model_json_schema()}}}}
