"""Pre-trade checks: one named check per limit, passed or failed, with value, limit and words."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from mikey.risk import checks
from mikey.risk.checks import RiskLimits

LIMITS = RiskLimits()


def test_defaults_are_sane() -> None:
    assert LIMITS.max_leverage == 20 and LIMITS.min_distance_to_liquidation_pct == 10
    assert 0 < LIMITS.max_var_99_pct <= LIMITS.max_daily_loss_pct <= LIMITS.max_drawdown_pct <= 100


def test_limits_refuse_bad_values() -> None:
    with pytest.raises(ValidationError):
        RiskLimits(max_leverage=float("nan"))
    with pytest.raises(ValidationError):
        RiskLimits(max_position_notional=-1)
    with pytest.raises(ValidationError):
        RiskLimits(max_var_99_pct=150)
    with pytest.raises(ValidationError):
        RiskLimits(max_levrage=10)  # type: ignore[call-arg]  # typos are errors, not ignored


def test_position_size() -> None:
    ok = checks.check_position_size(1_000, LIMITS)
    bad = checks.check_position_size(300_000, LIMITS)
    assert ok.passed and ok.name == "max_position_size" and ok.value == 1_000 and ok.limit == 250_000
    assert not bad.passed and "$50,000.00" in bad.detail
    assert checks.check_position_size(250_000, LIMITS).passed  # at the limit is within it


def test_leverage_against_user_and_tier() -> None:
    assert checks.check_leverage(10, LIMITS).passed
    over = checks.check_leverage(25, LIMITS)
    assert not over.passed and over.limit == 20 and "your limit" in over.detail
    tier = checks.check_leverage(15, LIMITS, tier_max_leverage=10)
    assert not tier.passed and tier.limit == 10 and "margin tier" in tier.detail
    assert checks.check_leverage(15, LIMITS, tier_max_leverage=50).limit == 20


def test_daily_loss_and_drawdown_are_leveraged_and_capped() -> None:
    day = checks.check_daily_loss(0.05, 4, LIMITS)  # 5% worst day at 4x: 20% of collateral
    assert day.passed and day.value == pytest.approx(20.0)
    wiped = checks.check_daily_loss(0.42, 5, LIMITS)
    assert not wiped.passed and wiped.value == 100.0 and "wiped out" in wiped.detail
    dd = checks.check_drawdown(0.3, 3, LIMITS)  # 90% of collateral > 60%
    assert not dd.passed and dd.value == pytest.approx(90.0) and dd.name == "max_drawdown"
    assert checks.check_drawdown(0.1, 1, LIMITS).passed


def test_portfolio_var() -> None:
    ok = checks.check_portfolio_var(0.05, 2, LIMITS)
    assert ok.passed and ok.value == pytest.approx(10.0)
    assert not checks.check_portfolio_var(0.11, 2, LIMITS).passed
    assert checks.check_portfolio_var(-0.01, 2, LIMITS).passed  # a tail without losses


def test_liquidation_distance() -> None:
    assert checks.check_liquidation_distance(25.0, LIMITS).passed
    near = checks.check_liquidation_distance(5.0, LIMITS)
    assert not near.passed and "5.00%" in near.detail
    beyond = checks.check_liquidation_distance(-2.0, LIMITS)
    assert not beyond.passed and "already beyond" in beyond.detail
    none = checks.check_liquidation_distance(None, LIMITS)
    assert none.passed and none.value is None and "cannot be liquidated" in none.detail


def test_pre_trade_checks_names_and_order() -> None:
    result = checks.pre_trade_checks(notional=5_000, leverage=5, worst_day_move=0.1, adverse_move=0.5, var_99=0.08,
                                     distance_pct=18.0, limits=LIMITS, tier_max_leverage=50)
    assert [c.name for c in result] == ["max_position_size", "max_leverage", "max_daily_loss", "max_drawdown",
                                        "max_portfolio_var", "min_distance_to_liquidation"]
    assert [c.passed for c in result] == [True, True, False, False, False, True]
    assert all(c.detail.endswith(".") for c in result)
