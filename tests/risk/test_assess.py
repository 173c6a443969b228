"""``assess``: the engine's one entry point, on the bundled history and on impossible inputs."""

from __future__ import annotations

import math
import subprocess
import sys
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from mikey.domain import PositionInput
from mikey.errors import DataUnavailable, InvalidInput, UnknownSymbol
from mikey.risk import liquidation as liq
from mikey.risk import market_risk as mr
from mikey.risk.assess import assess
from mikey.risk.checks import RiskLimits


def position(**fields: object) -> PositionInput:
    base: dict[str, object] = {"market": "SOL", "side": "long", "size": 100.0, "collateral": 500.0}
    return PositionInput(**(base | fields))


def finite_numbers(value: object) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(finite_numbers(v) for v in value.values())
    if isinstance(value, list):
        return all(finite_numbers(v) for v in value)
    return True


def test_long_on_a_year_of_sol(sol_year: pd.Series) -> None:
    result = assess(position(market="sol-perp"), closes=sol_year)
    last = float(sol_year.iloc[-1])

    assert result.market == "SOL" and result.entry_price == last and result.notional == pytest.approx(100 * last)
    assert result.leverage == pytest.approx(100 * last / 500)
    assert result.as_of == sol_year.index[-1].to_pydatetime() and result.history_bars == 365
    assert finite_numbers(result.model_dump())
    # SOL tier 1 (MMR 1%): LP = (100 x last - 500) / (100 x 0.99)
    assert result.liquidation_price == pytest.approx((100 * last - 500) / 99)
    assert result.distance_to_liquidation_pct == pytest.approx((last - result.liquidation_price) / last * 100)
    assert result.margin_ratio == pytest.approx(100 * last * 0.01 / 500)
    returns = mr.simple_returns(sol_year.to_numpy())
    assert result.var_99 == pytest.approx(-np.percentile(returns, 1))
    assert result.var_95 == pytest.approx(-np.percentile(returns, 5))
    assert result.volatility_annualized == pytest.approx(returns.std(ddof=1) * math.sqrt(365))
    assert result.max_drawdown == pytest.approx(mr.max_drawdown(sol_year.to_numpy()))
    assert result.risk_score == pytest.approx(sum(f.points for f in result.factors))
    assert [c.name for c in result.checks][0] == "max_position_size" and len(result.checks) == 6
    assert result.reasons and result.recommended_max_size > 0


def test_short_uses_the_other_tail(sol_year: pd.Series) -> None:
    long = assess(position(), closes=sol_year)
    short = assess(position(side="short"), closes=sol_year)
    returns = mr.simple_returns(sol_year.to_numpy())

    assert short.var_99 == pytest.approx(-np.percentile(-returns, 1))
    assert short.var_99 != long.var_99
    assert short.volatility_annualized == long.volatility_annualized
    assert short.liquidation_price is not None and short.liquidation_price > short.entry_price


def test_returns_give_the_same_market_risk_as_closes(sol_year: pd.Series) -> None:
    from_closes = assess(position(), closes=sol_year)
    returns = mr.simple_returns(sol_year.to_numpy()).tolist()
    price = float(sol_year.iloc[-1])
    from_returns = assess(position(), returns=returns, current_price=price, as_of=from_closes.as_of)
    in_input = assess(position(returns=returns), current_price=price, as_of=from_closes.as_of)

    for name in ("var_95", "cvar_95", "var_99", "cvar_99", "parametric_var_99", "volatility_annualized",
                 "ewma_volatility_annualized", "max_drawdown", "liquidation_price", "risk_score"):
        assert getattr(from_returns, name) == pytest.approx(getattr(from_closes, name), rel=1e-9), name
        assert getattr(in_input, name) == pytest.approx(getattr(from_closes, name), rel=1e-9), name
    assert from_returns.history_bars == 365


def test_returns_need_a_current_price() -> None:
    with pytest.raises(InvalidInput, match="current_price"):
        assess(position(), returns=[0.01, -0.02, 0.03])
    result = assess(position(entry_price=20.0), returns=[0.01, -0.02, 0.03], current_price=21.0)
    assert result.entry_price == 20.0 and result.as_of.tzinfo is not None


def test_history_is_required_once(sol_year: pd.Series) -> None:
    with pytest.raises(InvalidInput, match="not both"):
        assess(position(), closes=sol_year, returns=[0.01, 0.02])
    with pytest.raises(InvalidInput, match="needs history"):
        assess(position(), current_price=20.0)


def test_as_of_is_the_replay_clock(sol_all: pd.Series) -> None:
    clock = datetime(2022, 6, 1, tzinfo=UTC)
    result = assess(position(), closes=sol_all, as_of=clock)
    visible = sol_all[sol_all.index <= clock]

    assert result.as_of == clock and result.history_bars == len(visible)
    assert result.entry_price == float(visible.iloc[-1])
    with pytest.raises(DataUnavailable, match="no closes on or before"):
        assess(position(), closes=sol_all, as_of=datetime(2020, 1, 1, tzinfo=UTC))
    with pytest.raises(InvalidInput, match="timezone-aware"):
        assess(position(), closes=sol_all, as_of=datetime(2022, 6, 1))


def test_bad_history(sol_year: pd.Series) -> None:
    with pytest.raises(DataUnavailable, match="at least 3"):
        assess(position(), closes=sol_year.iloc[:2])
    with pytest.raises(InvalidInput, match="date order"):
        assess(position(), closes=sol_year.iloc[::-1])
    with pytest.raises(InvalidInput, match="DatetimeIndex"):
        assess(position(), closes=sol_year.reset_index(drop=True))
    broken = sol_year.copy()
    broken.iloc[10] = np.nan
    with pytest.raises(InvalidInput, match="NaN"):
        assess(position(), closes=broken)
    with pytest.raises(InvalidInput, match="positive"):
        assess(position(), closes=sol_year * 0)
    with pytest.raises(InvalidInput, match="-100%"):
        assess(position(), returns=[0.1, -1.5], current_price=20.0)


def test_undated_closes_and_weekday_history(btc_year: pd.Series) -> None:
    undated = assess(position(market="BTC", size=0.1, collateral=1_000), closes=btc_year.tolist())
    dated = assess(position(market="BTC", size=0.1, collateral=1_000), closes=btc_year)
    assert undated.var_99 == dated.var_99 and undated.volatility_annualized == dated.volatility_annualized

    weekdays = btc_year[btc_year.index.day_of_week < 5]
    result = assess(position(market="BTC", size=0.1, collateral=1_000), closes=weekdays)
    returns = mr.simple_returns(weekdays.to_numpy())
    assert result.volatility_annualized == pytest.approx(returns.std(ddof=1) * math.sqrt(252))


def test_unknown_market(sol_year: pd.Series) -> None:
    with pytest.raises(UnknownSymbol):
        assess(position(market="DOGE"), closes=sol_year)


def test_the_users_own_market(sol_year: pd.Series) -> None:
    """History of the user's own (a CSV of SPY, say) is assessed under ``market=``, with the strictest tier table."""
    own = assess(position(market="SPY"), closes=sol_year, market="SPY")
    sol = assess(position(), closes=sol_year)
    assert own.market == "SPY"
    assert own.model_dump(exclude={"market", "reasons"}) == sol.model_dump(exclude={"market", "reasons"})
    assert any("no margin tiers for SPY" in r for r in own.reasons)
    given = assess(position(market="SPY", maintenance_margin_ratio=0.05), closes=sol_year, market="SPY")
    assert given.margin_ratio == pytest.approx(given.notional * 0.05 / given.collateral)
    assert not any("margin tiers" in r for r in given.reasons)


@pytest.mark.parametrize(("fields", "words"), [
    ({"size": 5e-324}, "below 1e-06 USD: too small to be a position"),
    ({"side": "short", "size": 1e-7, "collateral": 1e306}, "size 1e-07 is too small for collateral 1e+306"),
])
def test_amounts_beyond_float_range_are_refused(sol_year: pd.Series, fields, words) -> None:
    """Sizes so small that the liquidation price divides by zero or overflows: refused, never inf or a crash."""
    with pytest.raises(InvalidInput) as caught:
        assess(position(**fields), closes=sol_year)
    assert words in str(caught.value)


def test_returns_compounding_beyond_float_range_are_refused() -> None:
    with pytest.raises(InvalidInput, match="^returns compound to a price path"):
        assess(position(), returns=[10.0] * 365, current_price=20.0)


def test_leverage_consistency(sol_year: pd.Series) -> None:
    last = float(sol_year.iloc[-1])
    implied = 100 * last / 500
    assert assess(position(leverage=implied * 1.005), closes=sol_year).leverage == pytest.approx(implied)
    with pytest.raises(InvalidInput, match="disagrees with notional / collateral"):
        assess(position(leverage=10), closes=sol_year)
    # cross: collateral is the account balance, leverage the venue setting (initial margin must fit)
    cross = assess(position(margin_mode="cross", leverage=10), closes=sol_year)
    assert cross.leverage == pytest.approx(implied)
    with pytest.raises(InvalidInput, match="initial margin"):
        assess(position(margin_mode="cross", leverage=2), closes=sol_year)
    with pytest.raises(InvalidInput, match="above the 100x maximum"):
        assess(position(collateral=10), closes=sol_year)


def test_maintenance_margin_override(sol_year: pd.Series) -> None:
    last = float(sol_year.iloc[-1])
    result = assess(position(maintenance_margin_ratio=0.05, maintenance_amount=10), closes=sol_year)
    assert result.liquidation_price == pytest.approx((500 + 10 - 100 * last) / (100 * 0.05 - 100))
    assert result.margin_ratio == pytest.approx((100 * last * 0.05 - 10) / 500)
    with pytest.raises(InvalidInput, match="needs maintenance_margin_ratio"):
        assess(position(maintenance_amount=10), closes=sol_year)
    with pytest.raises(InvalidInput, match="negative"):
        assess(position(maintenance_margin_ratio=0.01, maintenance_amount=1e6), closes=sol_year)


def test_tier_override(sol_year: pd.Series) -> None:
    strict = {"SOL": liq.tier_table([(None, 10, 0.08)])}
    default = assess(position(), closes=sol_year)
    result = assess(position(), closes=sol_year, tiers=strict)
    assert result.liquidation_price is not None and default.liquidation_price is not None
    assert result.liquidation_price > default.liquidation_price  # more maintenance margin: liquidated sooner
    with pytest.raises(InvalidInput, match="start at notional 0"):
        assess(position(), closes=sol_year, tiers={"SOL": [liq.MarginTier(floor=5, mmr=0.01)]})


def test_a_position_below_maintenance_cannot_open(sol_year: pd.Series) -> None:
    last = float(sol_year.iloc[-1])
    with pytest.raises(InvalidInput, match="liquidated as it opens"):
        assess(position(collateral=100 * last / 100), closes=sol_year)  # 100x on a 1% MMR market


def test_fully_collateralised_long(sol_year: pd.Series) -> None:
    last = float(sol_year.iloc[-1])
    result = assess(position(collateral=100 * last), closes=sol_year)
    assert result.liquidation_price is None and result.distance_to_liquidation_pct is None
    distance = next(c for c in result.checks if c.name == "min_distance_to_liquidation")
    assert distance.passed and "cannot be liquidated" in distance.detail
    assert not any(a.kind == "liquidation_distance" for a in result.alerts)


def test_price_beyond_liquidation_is_reported_not_refused(sol_year: pd.Series) -> None:
    last = float(sol_year.iloc[-1])
    result = assess(position(entry_price=last * 1.5, collateral=100 * last * 1.5 / 5), closes=sol_year)
    assert result.distance_to_liquidation_pct is not None and result.distance_to_liquidation_pct < 0
    assert any(a.kind == "liquidation_distance" and a.severity == "critical" for a in result.alerts)
    assert result.risk_level in ("HIGH", "CRITICAL")


def test_limits_change_the_checks_not_the_numbers(sol_year: pd.Series) -> None:
    loose = RiskLimits(max_leverage=100, max_daily_loss_pct=100, max_drawdown_pct=100, max_var_99_pct=100)
    strict = RiskLimits(max_position_notional=100)
    a, b = assess(position(), closes=sol_year, limits=loose), assess(position(), closes=sol_year, limits=strict)
    assert a.var_99 == b.var_99 and a.risk_score == b.risk_score
    assert all(c.passed for c in a.checks)
    assert not b.checks[0].passed and any("Limit breached" in r for r in b.reasons)
    assert b.recommended_max_size == pytest.approx(100 / float(sol_year.iloc[-1]))


def test_recommended_size_respects_the_var_budget(sol_year: pd.Series) -> None:
    result = assess(position(), closes=sol_year)
    last = float(sol_year.iloc[-1])
    budget = RiskLimits().max_var_99_pct / 100 * 500 / (result.var_99 * last)
    assert result.recommended_max_size == pytest.approx(min(budget, 20 * 500 / last, 250_000 / last))
    assert any("recommended maximum" in r for r in result.reasons)


def test_same_input_same_output(sol_year: pd.Series) -> None:
    assert assess(position(), closes=sol_year) == assess(position(), closes=sol_year)


def test_position_input_is_strict() -> None:
    """Numbers must be numbers: a bool or a numeric string is refused (ints are floats)."""
    for value in (True, "10"):
        with pytest.raises(ValidationError, match="valid number"):
            position(size=value)
    assert position(size=10).size == 10.0
    with pytest.raises(ValidationError, match="less than or equal to 10"):
        position(returns=[0.1, 10.5])


def test_position_input_refuses_nan_and_negatives() -> None:
    with pytest.raises(ValidationError):
        position(size=float("nan"))
    with pytest.raises(ValidationError):
        position(size=-1)
    with pytest.raises(ValidationError):
        position(collateral=0)
    with pytest.raises(ValidationError):
        position(leverage=500)


def test_importing_the_engine_does_not_import_pandas() -> None:
    code = "import sys, mikey.risk.assess; print(sorted(m for m in ('pandas', 'scipy', 'litellm') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
