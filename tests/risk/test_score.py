"""The risk score: bounded monotone factor points that sum to the score, levels, reasons and alerts."""

from __future__ import annotations

import pytest

from mikey.domain import RiskCheck
from mikey.risk import score
from mikey.risk.checks import RiskLimits

LIMITS = RiskLimits()


def test_each_factor_is_bounded_and_monotone() -> None:
    cases = [
        (score.leverage_points, [0.5, 1, 2, 5, 10, 20, 50, 100], 25),
        (score.volatility_points, [0, 0.2, 0.5, 0.8, 1.2, 3], 10),
        (score.drawdown_points, [0, 0.2, 0.5, 0.8, 0.99], 10),
        (score.concentration_points, [0.1, 0.25, 0.5, 1.0], 10),
    ]
    for fn, xs, cap in cases:
        points = [fn(x) for x in xs]
        assert points == sorted(points) and points[0] == 0 and points[-1] == cap
    distance = [score.distance_points(d) for d in (None, 80, 50, 30, 10, 5, 0, -5)]
    assert distance == sorted(distance) and distance[0] == 0 and distance[-1] == 25
    var = [score.var_points(v, 2) for v in (-0.1, 0, 0.05, 0.1, 0.25, 0.5)]
    assert var == sorted(var) and var[0] == 0 and var[-1] == 20


def test_caps_sum_to_100() -> None:
    worst = score.factors(leverage=100, distance_pct=1, var_99=0.5, volatility=2, drawdown=0.9, concentration=1)
    assert score.total(worst) == 100.0
    assert score.level_of(score.total(worst)) == "CRITICAL"


@pytest.mark.parametrize(("value", "level"), [(0, "LOW"), (24.99, "LOW"), (25, "MEDIUM"), (49.99, "MEDIUM"),
                                              (50, "HIGH"), (74.99, "HIGH"), (75, "CRITICAL"), (100, "CRITICAL")])
def test_levels(value: float, level: str) -> None:
    assert score.level_of(value) == level


def test_factors_sum_to_score_and_explain_themselves() -> None:
    factors = score.factors(leverage=5, distance_pct=19.5, var_99=0.08, volatility=0.9, drawdown=0.6)
    assert [f.name for f in factors] == ["leverage", "liquidation_distance", "var_99_leveraged", "volatility",
                                         "drawdown"]
    assert score.total(factors) == pytest.approx(sum(f.points for f in factors))
    assert factors[2].value == pytest.approx(0.4)  # VaR99 x leverage: 40% of collateral
    assert "5.0x" in factors[0].reason and "19.5%" in factors[1].reason


def test_no_liquidation_price_scores_nothing_for_distance() -> None:
    factor = score.factors(leverage=1, distance_pct=None, var_99=0.05, volatility=0.5, drawdown=0.3)[1]
    assert factor.points == 0 and factor.value == 100.0 and "cannot be liquidated" in factor.reason


def test_reasons_biggest_first_then_failed_checks() -> None:
    factors = score.factors(leverage=30, distance_pct=40, var_99=0.01, volatility=0.25, drawdown=0.1)
    failed = RiskCheck(name="max_leverage", passed=False, value=30, limit=20, detail="Leverage 30.00x exceeds x.")
    passed = RiskCheck(name="max_position_size", passed=True, detail="fine.")
    out = score.reasons(factors, [failed, passed])
    assert out[0].startswith("Leverage is 30.0x")
    assert len(out) == 4 and out[-1] == "Limit breached: Leverage 30.00x exceeds x."


def kinds(alerts: list) -> dict[str, str]:
    return {a.kind: a.severity for a in alerts}


def test_distance_alerts() -> None:
    common = {"var_loss_pct": 1.0, "leverage": 2.0, "margin_ratio": 0.01, "limits": LIMITS}
    assert kinds(score.alerts(distance_pct=5, **common)) == {"liquidation_distance": "critical"}
    assert kinds(score.alerts(distance_pct=15, **common)) == {"liquidation_distance": "warning"}
    assert kinds(score.alerts(distance_pct=25, **common)) == {}
    assert kinds(score.alerts(distance_pct=None, **common)) == {}
    beyond = score.alerts(distance_pct=-1, **common)
    assert kinds(beyond) == {"liquidation_distance": "critical"} and "already beyond" in beyond[0].message
    stricter = RiskLimits(min_distance_to_liquidation_pct=15)
    assert kinds(score.alerts(distance_pct=12, var_loss_pct=1, leverage=2, margin_ratio=0.01,
                              limits=stricter)) == {"liquidation_distance": "critical"}


def test_limit_and_margin_alerts() -> None:
    alerts = score.alerts(distance_pct=40, var_loss_pct=35, leverage=30, margin_ratio=0.6, limits=LIMITS,
                          tier_max_leverage=25)
    assert kinds(alerts) == {"var_limit": "warning", "tier_leverage": "critical", "leverage_limit": "warning",
                             "margin_ratio": "warning"}
    var = next(a for a in alerts if a.kind == "var_limit")
    assert var.value == 35 and var.threshold == LIMITS.max_var_99_pct
    assert kinds(score.alerts(distance_pct=40, var_loss_pct=1, leverage=2, margin_ratio=0.9,
                              limits=LIMITS)) == {"margin_ratio": "critical"}
