"""Typed domain models, defined once and shared by every layer.

Prices are ``Decimal`` (parsed from the source's text, so a replayed close equals the published close exactly);
indicator values are ``float`` (they are computed in float64). All timestamps are timezone-aware UTC datetimes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

IntentKind = Literal[
    "price", "analysis", "compare", "explain", "risk", "portfolio", "trade", "alert", "smalltalk", "unknown"
]


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


class Facts(BaseModel):
    """Everything the tools gathered for one turn. The only place numbers in an answer may come from."""

    symbol: str
    quote: Quote | None = None
    indicators: IndicatorSnapshot | None = None
    parameters: dict[str, float] = Field(
        default_factory=dict, description="Indicator periods and multipliers, which a narrative may name."
    )

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
        return out


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
    """What the user asked for, as parsed from the message."""

    kind: IntentKind
    symbols: list[str] = Field(default_factory=list, description="Resolved, supported market symbols.")
    unknown_symbols: list[str] = Field(default_factory=list, description="Tickers named that MIKEY does not cover.")


class GroundingReport(BaseModel):
    """How the numbers in a narrative matched the facts."""

    checked: int = 0
    matched: int = 0
    removed: list[str] = Field(default_factory=list, description="Number tokens that matched no fact.")

    @property
    def score(self) -> float:
        """Share of numbers that matched a fact; 1.0 when the narrative has none."""
        return 1.0 if self.checked == 0 else self.matched / self.checked


class Answer(BaseModel):
    """One reply of MIKEY's: grounded words, the facts behind them, and who wrote them."""

    text: str
    facts: Facts | None = None
    group: str = Field(description="Model group that wrote the words ('rules' when no model was needed).")
    model: str = Field(description="Model that wrote the words, as the router reports it.")
    grounding: GroundingReport = Field(default_factory=GroundingReport)
    notice: str | None = Field(None, description="Why the answer is not from the group asked for, if it is not.")


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


class PositionInput(BaseModel):
    """A perpetual position to assess: the request of ``mikey risk assess`` and ``POST /v1/risk/assess``.

    Linear USD-margined contracts: ``size`` in base units, ``collateral`` in USD. Missing optional fields come from
    the market (``entry_price``: the current price) and its tier table (maintenance margin).
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    market: str = Field(description="e.g. SOL, SOL-PERP, solana; must be a supported market.")
    side: Literal["long", "short"]
    size: float = Field(gt=0, description="Position size in base units.")
    entry_price: float | None = Field(None, gt=0, description="Default: the current price.")
    collateral: float = Field(gt=0, description="Margin posted, in USD.")
    leverage: float | None = Field(None, gt=0, le=100, description="Default: notional / collateral.")
    margin_mode: Literal["isolated", "cross"] = "isolated"
    maintenance_margin_ratio: float | None = Field(None, gt=0, lt=1, description="Default: the market's tier.")
    maintenance_amount: float | None = Field(None, ge=0, description="Tier maintenance amount (USD), default 0.")
    returns: list[float] | None = Field(None, min_length=2, description="Daily simple returns instead of history.")


class RiskCheck(BaseModel):
    """One named pre-trade check against a limit."""

    model_config = ConfigDict(frozen=True)

    name: str
    passed: bool
    value: float | None = None
    limit: float | None = None
    detail: str


class RiskFactor(BaseModel):
    """One factor of the risk score and its contribution in points (the contributions sum to the score)."""

    model_config = ConfigDict(frozen=True)

    name: str
    value: float
    points: float = Field(ge=0)
    reason: str


class RiskAlert(BaseModel):
    """A threshold crossing, e.g. distance to liquidation under 10%."""

    model_config = ConfigDict(frozen=True)

    kind: str
    severity: Literal["info", "warning", "critical"]
    message: str
    value: float
    threshold: float


class RiskAssessment(BaseModel):
    """The risk engine's answer: exact, explainable, and the same from the CLI, the API and the agent tool."""

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
