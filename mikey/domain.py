"""Typed domain models, defined once and shared by every layer.

Prices are ``Decimal`` (parsed from the source's text, so a replayed close equals the published close exactly);
indicator values are ``float`` (they are computed in float64). All timestamps are timezone-aware UTC datetimes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

IntentKind = Literal[
    "price", "analysis", "compare", "explain", "risk", "portfolio", "trade", "alert", "smalltalk", "unknown"
]
Timeframe = Literal["1h", "4h", "1d", "1w", "1M"]
RiskTolerance = Literal["low", "medium", "high"]


def _require_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("timestamp must be timezone-aware (UTC)")
    return value.astimezone(UTC)


class Candle(BaseModel):
    """One OHLCV bar; ``ts`` is the bar's open time."""

    model_config = ConfigDict(frozen=True)

    symbol: str
    ts: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal = Field(description="Volume in quote currency (USD) for the bundled data.")

    _utc = field_validator("ts")(_require_utc)


class Quote(BaseModel):
    """The latest price of a market as seen by a feed at ``as_of``."""

    model_config = ConfigDict(frozen=True)

    symbol: str
    price: Decimal
    as_of: datetime = Field(description="When the source published the price (Pyth: publish_time), UTC.")
    source: str = Field(description="Where the price came from, e.g. 'replay:SOL-USD.daily.csv', 'pyth'.")
    prev_close: Decimal | None = Field(None, description="The previous bar's close, for the 1-day change.")
    conf: Decimal | None = Field(None, description="Oracle confidence interval (same unit as price), if any.")
    ema_price: Decimal | None = Field(None, description="Oracle EMA price, if the source publishes one.")

    _utc = field_validator("as_of")(_require_utc)

    @property
    def change_pct(self) -> float | None:
        """Change against the previous close, in percent."""
        if self.prev_close is None or self.prev_close == 0:
            return None
        return float((self.price - self.prev_close) / self.prev_close * 100)


class PriceCheck(BaseModel):
    """The verdict of validation on one quote: valid or not, and every reason it is not."""

    model_config = ConfigDict(frozen=True)

    symbol: str
    source: str
    valid: bool
    reasons: list[str] = Field(default_factory=list, description="Empty when valid; each failed rule, in words.")
    checked_at: datetime

    _utc = field_validator("checked_at")(_require_utc)


class NewsItem(BaseModel):
    """One news article from an RSS/Atom feed, tagged with the markets it mentions."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(description="Stable de-duplication key (the feed's guid, else a hash of the link).")
    source: str
    title: str
    url: str
    published_at: datetime
    summary: str = ""
    symbols: list[str] = Field(default_factory=list)

    _utc = field_validator("published_at")(_require_utc)


class SocialPost(BaseModel):
    """One post from X or Discord, tagged with the markets it mentions."""

    model_config = ConfigDict(frozen=True)

    id: str
    platform: Literal["x", "discord"]
    author: str
    text: str
    created_at: datetime
    url: str | None = None
    symbols: list[str] = Field(default_factory=list)
    metrics: dict[str, int] = Field(default_factory=dict, description="Likes, reposts, replies... as the API gives.")

    _utc = field_validator("created_at")(_require_utc)


class IndicatorSnapshot(BaseModel):
    """Last-bar values of the standard indicator set (TA-Lib conventions), with the parameters that produced them."""

    model_config = ConfigDict(frozen=True)

    symbol: str
    as_of: datetime
    rsi_14: float = Field(description="RSI, Wilder smoothing, 14 bars.")
    macd: float = Field(description="MACD line, EMA(12) - EMA(26) of closes.")
    macd_signal: float = Field(description="EMA(9) of the MACD line.")
    macd_hist: float = Field(description="MACD line minus signal line.")
    bb_upper: float = Field(description="Bollinger upper band: SMA(20) + 2 population standard deviations.")
    bb_middle: float
    bb_lower: float
    atr_14: float = Field(description="Average true range, Wilder smoothing, 14 bars.")
    bars: int = Field(description="How many bars the values rest on.")

    _utc = field_validator("as_of")(_require_utc)


class Fact(BaseModel):
    """One number MIKEY may state, with the text it is shown as and where it came from."""

    model_config = ConfigDict(frozen=True)

    name: str
    label: str
    value: float
    display: str
    source: str
    as_of: datetime


class Provenance(BaseModel):
    """Where one tool's result in a turn's ``Facts`` came from, or why it is missing."""

    model_config = ConfigDict(frozen=True)

    tool: str = Field(description="e.g. 'quote', 'indicators', 'analysis', 'risk', 'memory'.")
    source: str = Field(description="The feed, engine or store behind it, e.g. 'replay', 'pyth', 'chroma'.")
    as_of: datetime | None = None
    error: str | None = Field(None, description="Why the tool gave nothing; the turn goes on without it.")


class Recall(BaseModel):
    """A document recalled from the vector memory: older words, never a source of current numbers."""

    model_config = ConfigDict(frozen=True)

    collection: str
    text: str
    similarity: float = Field(description="Cosine similarity to the query, 1 = same meaning.")
    score: float = Field(description="Ranking score: similarity weighted by recency.")
    stored_at: datetime
    symbol: str | None = None


class Facts(BaseModel):
    """Everything the tools gathered for one turn. The only place numbers in an answer may come from.

    News headlines and recalled memories are context for the words and are never a source of numbers: their text is
    written by others (or by an earlier turn) and is not checked against a market source.
    """

    symbol: str
    quote: Quote | None = None
    indicators: IndicatorSnapshot | None = None
    parameters: dict[str, float] = Field(
        default_factory=dict, description="Indicator periods and multipliers, which a narrative may name."
    )
    patterns: list[PatternFinding] = Field(default_factory=list)
    sentiment: SentimentScore | None = None
    signal: Signal | None = None
    risk: RiskAssessment | None = None
    news: list[NewsItem] = Field(default_factory=list, description="Headlines the sentiment rests on (untrusted).")
    memories: list[Recall] = Field(default_factory=list)
    compared: list[Facts] = Field(default_factory=list, description="Facts of the other markets of a comparison.")
    provenance: list[Provenance] = Field(default_factory=list)

    def numbers(self) -> list[Fact]:
        """The facts as labelled numbers, in the order a facts card shows them."""
        out: list[Fact] = []
        if self.quote is not None:
            q = self.quote
            out.append(Fact(name="price", label="Price (USD)", value=float(q.price), display=f"{q.price}",
                            source=q.source, as_of=q.as_of))
            if q.change_pct is not None:
                out.append(Fact(name="change_1d_pct", label="Change 1d", value=q.change_pct,
                                display=f"{q.change_pct:+.2f}%", source=q.source, as_of=q.as_of))
        if self.indicators is not None:
            ind = self.indicators
            source = f"indicators({ind.bars} daily bars)"
            for name, label, digits in _INDICATOR_FIELDS:
                value = getattr(ind, name)
                out.append(Fact(name=name, label=label, value=value, display=f"{value:.{digits}f}",
                                source=source, as_of=ind.as_of))
        if self.signal is not None:
            s = self.signal
            out.append(Fact(name="signal_strength", label=f"Signal {s.action} strength", value=s.strength,
                            display=f"{s.strength:.2f}", source="signals", as_of=s.as_of))
        if self.sentiment is not None and self.sentiment.items:
            m = self.sentiment
            out.append(Fact(name="sentiment_score", label=f"Sentiment ({m.items} items)", value=m.score,
                            display=f"{m.score:+.2f}", source=m.method, as_of=m.as_of or _as_of(out)))
        price = float(self.quote.price) if self.quote is not None else None
        for kind in ("support", "resistance"):
            levels = [p for p in self.patterns if p.kind == kind and p.level is not None]
            if price is not None:  # nearest first: support_1 is the closest support
                levels.sort(key=lambda p: abs(price - p.level))
            for i, p in enumerate(levels, 1):
                out.append(Fact(name=f"{kind}_{i}", label=f"{kind.capitalize()} {i}", value=p.level,
                                display=f"{p.level:.4f}", source=f"patterns({p.bars} bars)", as_of=p.end))
        if self.risk is not None:
            out += _risk_numbers(self.risk)
        for other in self.compared:
            out += [f.model_copy(update={"name": f"{other.symbol.lower()}_{f.name}",
                                         "label": f"{other.symbol} {f.label}"}) for f in other.numbers()]
        return out


def _as_of(facts: list[Fact]) -> datetime:
    return facts[0].as_of if facts else datetime.now(UTC)


def _risk_numbers(r: RiskAssessment) -> list[Fact]:
    source = f"risk engine({r.history_bars} daily bars)"
    rows: list[tuple[str, str, float | None, str]] = [
        ("position_size", f"Size ({r.market})", r.size, f"{r.size:.4f}"),
        ("position_notional", "Notional (USD)", r.notional, f"{r.notional:.2f}"),
        ("position_collateral", "Collateral (USD)", r.collateral, f"{r.collateral:.2f}"),
        ("position_leverage", "Leverage", r.leverage, f"{r.leverage:.2f}x"),
        ("entry_price", "Entry price (USD)", r.entry_price, f"{r.entry_price}"),
        ("liquidation_price", "Liquidation price (USD)", r.liquidation_price,
         "" if r.liquidation_price is None else f"{r.liquidation_price:.4f}"),
        ("distance_to_liquidation_pct", "Distance to liquidation", r.distance_to_liquidation_pct,
         "" if r.distance_to_liquidation_pct is None else f"{r.distance_to_liquidation_pct:.2f}%"),
        ("var_95_pct", "1-day VaR(95) % of notional", 100 * r.var_95, f"{100 * r.var_95:.2f}%"),
        ("var_99_pct", "1-day VaR(99) % of notional", 100 * r.var_99, f"{100 * r.var_99:.2f}%"),
        ("volatility_pct", "Annualised volatility", 100 * r.volatility_annualized,
         f"{100 * r.volatility_annualized:.1f}%"),
        ("risk_score", f"Risk score ({r.risk_level})", r.risk_score, f"{r.risk_score:.0f}"),
        ("recommended_max_size", "Recommended max size", r.recommended_max_size, f"{r.recommended_max_size:.4f}"),
    ]
    return [Fact(name=name, label=label, value=value, display=display, source=source, as_of=r.as_of)
            for name, label, value, display in rows if value is not None]


_INDICATOR_FIELDS = (
    ("rsi_14", "RSI(14)", 2),
    ("macd", "MACD(12,26,9)", 4),
    ("macd_signal", "MACD signal", 4),
    ("macd_hist", "MACD histogram", 4),
    ("bb_upper", "Bollinger upper(20,2)", 4),
    ("bb_middle", "Bollinger middle", 4),
    ("bb_lower", "Bollinger lower", 4),
    ("atr_14", "ATR(14)", 4),
)


class Intent(BaseModel):
    """What the user asked for, as parsed from the message (by the ``understand`` model, checked by the rules)."""

    kind: IntentKind
    symbols: list[str] = Field(default_factory=list, description="Resolved, supported market symbols.")
    unknown_symbols: list[str] = Field(default_factory=list, description="Tickers named that MIKEY does not cover.")
    timeframe: Timeframe | None = Field(None, description="Horizon the user asked about, if any.")
    side: Literal["long", "short"] | None = None
    leverage: float | None = Field(None, gt=0, le=100)
    collateral: float | None = Field(None, gt=0, description="Margin in USD(C).")
    risk_tolerance: RiskTolerance | None = None
    favourite_markets: list[str] = Field(default_factory=list, description="Markets the user said they follow.")
    parsed_by: str = Field("rules", description="'rules', or the model group whose parse the rules confirmed.")


class GroundingReport(BaseModel):
    """How the numbers in a narrative matched the facts."""

    checked: int = 0
    matched: int = 0
    removed: list[str] = Field(default_factory=list, description="Number tokens that matched no fact.")
    claims: list[str] = Field(
        default_factory=list, description="Sentences removed for claiming a trade was made, approved or is under way.")
    repeated: int = Field(0, description="Sentences dropped because the draft had already said them (a looping model).")

    @property
    def score(self) -> float:
        """Share of numbers that matched a fact; 1.0 when the narrative has none."""
        return 1.0 if self.checked == 0 else self.matched / self.checked


class TradeProposal(BaseModel):
    """A trade a chat turn may propose and never execute: it waits for a human's approval (a separate flow).

    Every parameter comes from the user's own message, never from a model or fetched text; the risk assessment is
    the engine's, at the proposal's price.
    """

    id: str
    market: str
    side: Literal["long", "short"]
    leverage: float = Field(gt=0, le=100)
    collateral: float = Field(gt=0, description="Margin in USD(C).")
    size: float = Field(gt=0, description="Base units: collateral * leverage / entry price.")
    entry_price: float = Field(gt=0, description="Current price when proposed.")
    risk: RiskAssessment
    status: Literal["awaiting_approval"] = "awaiting_approval"
    created_at: datetime
    note: str = "Proposal only: nothing is executed from chat. A human approves or rejects it in the approval flow."

    _utc = field_validator("created_at")(_require_utc)


class Answer(BaseModel):
    """One reply of MIKEY's: grounded words, the facts behind them, and who wrote them."""

    text: str
    facts: Facts | None = None
    group: str = Field(description="Model group that wrote the words ('rules' when no model was needed).")
    model: str = Field(description="Model that wrote the words, as the router reports it.")
    grounding: GroundingReport = Field(default_factory=GroundingReport)
    notice: str | None = Field(None, description="Why the answer is not from the group asked for, if it is not.")
    intent: Intent | None = None
    proposal: TradeProposal | None = None


class Insight(BaseModel):
    """One market's entry in the market summary feed: the analysis pipeline's output, stored in memory."""

    symbol: str
    as_of: datetime
    summary: str = Field(description="Grounded narrative written by a model (or the offline writer).")
    signal: Signal
    sentiment: SentimentScore
    patterns: list[PatternFinding]
    risk_level: Literal["LOW", "MEDIUM", "HIGH", "CRITICAL"]
    risk_score: float = Field(ge=0, le=100)
    recommendations: list[str]
    alerts: list[RiskAlert]
    facts: Facts
    grounding: GroundingReport
    group: str
    model: str

    _utc = field_validator("as_of")(_require_utc)


class PatternFinding(BaseModel):
    """A pattern found by code: what, how strong, and the bars it rests on."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["candlestick", "support", "resistance", "trend", "volatility", "divergence"]
    name: str = Field(description="e.g. 'CDLENGULFING', 'support', 'uptrend', 'bearish RSI divergence'.")
    direction: Literal["bullish", "bearish", "neutral"]
    strength: float = Field(ge=0, le=1)
    start: datetime = Field(description="First bar the finding rests on (UTC).")
    end: datetime = Field(description="Last bar the finding rests on (UTC).")
    bars: int = Field(ge=1, description="How many bars it rests on.")
    level: float | None = Field(None, description="Price level for support/resistance.")

    _utc = field_validator("start", "end")(_require_utc)


class SentimentScore(BaseModel):
    """Sentiment of a market (or one text): a score in [-1, 1] and what it rests on."""

    model_config = ConfigDict(frozen=True)

    symbol: str | None = None
    score: float = Field(ge=-1, le=1)
    label: Literal["positive", "negative", "neutral"]
    items: int = Field(ge=0, description="How many texts the score rests on.")
    as_of: datetime | None = None
    method: str = Field(description="Scorer, e.g. 'vader+lm+crypto' or a classifier path.")


class SignalFactor(BaseModel):
    """One input of a signal and how much it pushed: contribution in [-1, 1], positive = towards BUY."""

    model_config = ConfigDict(frozen=True)

    name: str
    value: float | None = None
    contribution: float = Field(ge=-1, le=1)
    reason: str


class Signal(BaseModel):
    """BUY / SELL / HOLD with a strength in [0, 1] and the factors that produced it."""

    model_config = ConfigDict(frozen=True)

    symbol: str
    as_of: datetime
    action: Literal["BUY", "SELL", "HOLD"]
    strength: float = Field(ge=0, le=1)
    factors: list[SignalFactor]

    _utc = field_validator("as_of")(_require_utc)


class BacktestResult(BaseModel):
    """Performance of the signal rules over history, next to buy-and-hold."""

    model_config = ConfigDict(frozen=True)

    start: datetime
    end: datetime
    bars: int
    trades: int
    total_return: float
    cagr: float
    sharpe: float
    sortino: float
    max_drawdown: float
    hit_rate: float
    exposure: float
    buy_and_hold_return: float
    buy_and_hold_cagr: float
    buy_and_hold_max_drawdown: float
    fee_bps: float
    slippage_bps: float


MAX_DAILY_RETURN = 10.0
"""Largest daily simple return accepted (+1,000%: the price times 11 in one day), above any day a listed perpetual
market has had. With -1 (a price cannot fall to zero and stay tradable), it bounds every return the risk engine
takes."""

DailyReturn = Annotated[float, Field(gt=-1, le=MAX_DAILY_RETURN)]


class PositionInput(BaseModel):
    """A perpetual position to assess: the request of ``mikey risk assess`` and ``POST /v1/risk/assess``.

    Linear USD-margined contracts: ``size`` in base units, ``collateral`` in USD. Missing optional fields come from
    the market (``entry_price``: the current price) and its tier table (maintenance margin).

    Strict: a number must be a JSON number (an integer is taken as a float), never ``true`` or ``"10"``; NaN and
    infinity are refused.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)

    market: str = Field(description="e.g. SOL, SOL-PERP, solana; a supported market, or any symbol when the history "
                                    "is the user's own (mikey risk assess --history).")
    side: Literal["long", "short"]
    size: float = Field(gt=0, description="Position size in base units.")
    entry_price: float | None = Field(None, gt=0, description="Default: the current price.")
    collateral: float = Field(gt=0, description="Margin posted, in USD.")
    leverage: float | None = Field(None, gt=0, le=100, description="Default: notional / collateral.")
    margin_mode: Literal["isolated", "cross"] = "isolated"
    maintenance_margin_ratio: float | None = Field(None, gt=0, lt=1, description="Default: the market's tier.")
    maintenance_amount: float | None = Field(None, ge=0, description="Tier maintenance amount (USD), default 0.")
    returns: list[DailyReturn] | None = Field(
        None, min_length=2, description="Daily simple returns instead of history, oldest first: fractions (0.05 = "
        f"+5%) above -1 and at most {MAX_DAILY_RETURN:g}.")


class RiskCheck(BaseModel):
    """One named pre-trade check against a limit."""

    model_config = ConfigDict(frozen=True, allow_inf_nan=False)

    name: str
    passed: bool
    value: float | None = None
    limit: float | None = None
    detail: str


class RiskFactor(BaseModel):
    """One factor of the risk score and its contribution in points (the contributions sum to the score)."""

    model_config = ConfigDict(frozen=True, allow_inf_nan=False)

    name: str
    value: float
    points: float = Field(ge=0)
    reason: str


class RiskAlert(BaseModel):
    """A threshold crossing, e.g. distance to liquidation under 10%."""

    model_config = ConfigDict(frozen=True, allow_inf_nan=False)

    kind: str
    severity: Literal["info", "warning", "critical"]
    message: str
    value: float
    threshold: float


class RiskAssessment(BaseModel):
    """The risk engine's answer: exact, explainable, and the same from the CLI, the API and the agent tool.

    Every number is finite: inputs that would make one infinite or NaN are refused, never answered with ``null``.
    """

    model_config = ConfigDict(allow_inf_nan=False)

    market: str
    side: Literal["long", "short"]
    size: float
    entry_price: float
    notional: float
    collateral: float
    leverage: float
    liquidation_price: float | None = Field(description="None when the position cannot be liquidated (fully margined).")
    distance_to_liquidation_pct: float | None
    margin_ratio: float = Field(description="Maintenance margin / margin balance at the entry price.")
    var_95: float = Field(description="1-day historical VaR at 95%, fraction of notional, from the position's side.")
    cvar_95: float
    var_99: float
    cvar_99: float
    parametric_var_95: float
    parametric_var_99: float
    volatility_annualized: float
    ewma_volatility_annualized: float
    max_drawdown: float
    risk_score: float = Field(ge=0, le=100)
    risk_level: Literal["LOW", "MEDIUM", "HIGH", "CRITICAL"]
    factors: list[RiskFactor]
    recommended_max_size: float
    checks: list[RiskCheck]
    alerts: list[RiskAlert]
    reasons: list[str]
    as_of: datetime
    history_bars: int


# Facts refers to models defined after it (patterns, signal, risk) and to itself (compared markets).
Facts.model_rebuild()
Answer.model_rebuild()
Insight.model_rebuild()
