"""Sizing: fixed fraction with a stop, volatility target, capped Kelly, and the recommended maximum size."""

from __future__ import annotations

import pytest

from mikey.errors import InvalidInput
from mikey.risk import sizing
from mikey.risk.liquidation import DEFAULT_TIERS, single_tier


def test_fixed_fraction_risks_the_fraction_at_the_stop() -> None:
    size = sizing.fixed_fraction_size(10_000, 0.01, 100, 95)
    assert size == pytest.approx(20.0)  # 20 x (100 - 95) = 100 = 1% of 10,000
    assert sizing.fixed_fraction_size(10_000, 0.01, 100, 105, side="short") == pytest.approx(20.0)


def test_fixed_fraction_refuses_impossible_stops() -> None:
    with pytest.raises(InvalidInput, match="differ"):
        sizing.fixed_fraction_size(10_000, 0.01, 100, 100)
    with pytest.raises(InvalidInput, match="losing side"):
        sizing.fixed_fraction_size(10_000, 0.01, 100, 105, side="long")
    with pytest.raises(InvalidInput, match="losing side"):
        sizing.fixed_fraction_size(10_000, 0.01, 100, 95, side="short")
    with pytest.raises(InvalidInput, match="fraction of equity"):
        sizing.fixed_fraction_size(10_000, 2, 100, 95)
    with pytest.raises(InvalidInput, match="equity must be a positive number"):
        sizing.fixed_fraction_size(float("nan"), 0.01, 100, 95)


def test_volatility_target() -> None:
    # 20% target on 10,000 of equity with an 80%-vol asset: 2,500 notional, 50 units at 50
    size = sizing.volatility_target_size(10_000, 0.20, 0.80, 50)
    assert size == pytest.approx(50.0)
    assert size * 50 * 0.80 / 10_000 == pytest.approx(0.20)  # the position's volatility is the target
    with pytest.raises(InvalidInput):
        sizing.volatility_target_size(10_000, 0.20, 0.0, 50)


def test_kelly_is_capped_at_a_quarter_and_never_negative() -> None:
    assert sizing.kelly_fraction(0.55, 1.0) == pytest.approx(0.25 * 0.10)  # full Kelly 0.55 - 0.45 = 0.10
    assert sizing.kelly_fraction(0.5, 2.0) == pytest.approx(0.25 * 0.25)  # 0.5 - 0.5 / 2
    assert sizing.kelly_fraction(0.5, 2.0, cap=1.0) == pytest.approx(0.25)  # full Kelly when asked
    assert sizing.kelly_fraction(0.4, 1.0) == 0.0  # no edge, no bet
    with pytest.raises(InvalidInput):
        sizing.kelly_fraction(1.2, 1.0)
    with pytest.raises(InvalidInput):
        sizing.kelly_fraction(0.5, 1.0, cap=1.5)


def test_kelly_size_goes_through_the_stop() -> None:
    assert sizing.kelly_size(10_000, 0.55, 1.0, 100, 95) == pytest.approx(10_000 * 0.025 / 5)
    assert sizing.kelly_size(10_000, 0.3, 1.0, 100, 95) == 0.0


def test_recommended_size_is_the_smallest_limit() -> None:
    by_leverage = sizing.recommended_max_size(collateral=1_000, price=100, max_leverage=5,
                                              max_position_notional=1e9)
    assert by_leverage.size == pytest.approx(50.0) and by_leverage.binding == "max_leverage"

    by_notional = sizing.recommended_max_size(collateral=1_000, price=100, max_leverage=5,
                                              max_position_notional=2_000)
    assert by_notional.size == pytest.approx(20.0) and by_notional.binding == "max_position_notional"

    # VaR99 of 10% of notional and a 20% budget on 1,000 of collateral: 2,000 notional, 20 units
    by_var = sizing.recommended_max_size(collateral=1_000, price=100, max_leverage=50, max_position_notional=1e9,
                                         var_99=0.10, var_budget_fraction=0.20)
    assert by_var.size == pytest.approx(20.0) and by_var.binding == "var_budget"
    assert by_var.limits == pytest.approx({"max_leverage": 500.0, "max_position_notional": 1e7, "var_budget": 20.0})
    assert "VaR" in by_var.reason


def test_var_budget_ignored_without_a_loss() -> None:
    rec = sizing.recommended_max_size(collateral=1_000, price=100, max_leverage=5, max_position_notional=1e9,
                                      var_99=-0.01, var_budget_fraction=0.2)
    assert "var_budget" not in rec.limits


def test_tier_maximum_leverage_caps_the_size() -> None:
    btc = DEFAULT_TIERS["BTC"]
    # 1,000,000 of collateral at up to 100x: tier 4 (1M-10M) allows 20x -> 10M notional, tier 5 (10M-20M) 10x -> 10M
    assert sizing.max_notional_for_leverage(1_000_000, 100, btc) == pytest.approx(10_000_000)
    # a small account is bound by the user's limit inside tier 1
    assert sizing.max_notional_for_leverage(100, 20, btc) == pytest.approx(2_000)
    # 125x is only allowed up to 50,000 of notional; then 100x up to 250,000
    assert sizing.max_notional_for_leverage(1_000, 125, btc) == pytest.approx(100_000)
    assert sizing.max_notional_for_leverage(1_000, 30, single_tier(0.01)) == pytest.approx(30_000)


@pytest.mark.parametrize(("var_95", "most"), [(0.0333, 3), (0.05, 2), (0.1, 1), (0.2, 0), (0.0004, 100), (0.0, None),
                                              (-0.01, None)])
def test_guided_leverage_keeps_a_days_95_loss_under_a_tenth_of_collateral(var_95, most) -> None:
    assert sizing.guided_leverage(var_95) == most
    if most:
        assert most * var_95 <= sizing.LOSS_BUDGET
        assert most == sizing.MAX_GUIDED_LEVERAGE or (most + 1) * var_95 > sizing.LOSS_BUDGET
