"""What the risk engine takes and gives: a perpetual position, and its assessment with checks, factors and alerts."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

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
