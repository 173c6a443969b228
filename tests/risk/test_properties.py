"""Properties of the engine for any valid input (hypothesis): liquidation moves the right way with collateral and
leverage, no NaN or infinity ever comes out, and the score never falls as leverage rises."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from mikey.domain import PositionInput
from mikey.errors import InvalidInput
from mikey.risk import liquidation as liq
from mikey.risk.assess import assess
from mikey.risk.market_risk import simple_returns

PROFILE = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

markets = st.sampled_from(sorted(liq.DEFAULT_TIERS))
sides = st.sampled_from(["long", "short"])
bases = st.sampled_from(["mark", "entry"])
prices = st.floats(min_value=0.01, max_value=200_000, allow_nan=False, allow_infinity=False)
sizes = st.floats(min_value=1e-4, max_value=1e5, allow_nan=False, allow_infinity=False)
leverages = st.floats(min_value=1.0, max_value=100.0, allow_nan=False, allow_infinity=False)


def far(side: str, price: float | None) -> float:
    """A liquidation price as a distance-like number: None (no liquidation) is infinitely far."""
    if price is None:
        return math.inf
    return -price if side == "long" else price


@PROFILE
@given(markets, sides, bases, prices, sizes, leverages, st.floats(min_value=1.01, max_value=10))
def test_more_collateral_moves_liquidation_away(market: str, side: str, basis: str, entry: float, size: float,
                                                leverage: float, more: float) -> None:
    tiers = liq.DEFAULT_TIERS[market]
    collateral = size * entry / leverage
    before = liq.isolated_liquidation_price(side, size, entry, collateral, tiers, basis=basis)  # type: ignore[arg-type]
    after = liq.isolated_liquidation_price(side, size, entry, collateral * more, tiers, basis=basis)  # type: ignore[arg-type]
    assert far(side, after) >= far(side, before)
    if before is not None and after is not None:
        assert far(side, after) > far(side, before)


@PROFILE
@given(markets, sides, bases, prices, sizes, leverages, leverages)
def test_higher_leverage_moves_liquidation_closer(market: str, side: str, basis: str, entry: float, size: float,
                                                  lev_a: float, lev_b: float) -> None:
    low, high = sorted((lev_a, lev_b))
    tiers = liq.DEFAULT_TIERS[market]
    notional = size * entry
    at_low = liq.isolated_liquidation_price(side, size, entry, notional / low, tiers, basis=basis)  # type: ignore[arg-type]
    at_high = liq.isolated_liquidation_price(side, size, entry, notional / high, tiers, basis=basis)  # type: ignore[arg-type]
    assert far(side, at_high) <= far(side, at_low)
    d_low = liq.distance_to_liquidation_pct(side, at_low, entry)  # type: ignore[arg-type]
    d_high = liq.distance_to_liquidation_pct(side, at_high, entry)  # type: ignore[arg-type]
    assert (math.inf if d_high is None else d_high) <= (math.inf if d_low is None else d_low)


@PROFILE
@given(markets, sides, prices, sizes, leverages)
def test_mark_basis_root_is_exact(market: str, side: str, entry: float, size: float, leverage: float) -> None:
    tiers = liq.DEFAULT_TIERS[market]
    collateral = size * entry / leverage
    assume(liq.margin_ratio(side, size, entry, collateral, tiers) < 1)  # type: ignore[arg-type]
    lp = liq.isolated_liquidation_price(side, size, entry, collateral, tiers)  # type: ignore[arg-type]
    if lp is None:
        assert side == "long" and collateral + size * (0 - entry) >= -1e-9 * size * entry
    else:
        sign = 1 if side == "long" else -1
        balance = collateral + sign * size * (lp - entry)  # margin balance at LP ...
        assert balance == pytest.approx(liq.maintenance_margin(tiers, size * lp), abs=1e-9 * size * entry)  # = MM


def finite(value: object) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(finite(v) for v in value.values())
    if isinstance(value, list):
        return all(finite(v) for v in value)
    return True


@st.composite
def positions(draw: st.DrawFn) -> tuple[PositionInput, float]:
    """A valid position and the current price: leverage from 0.05x (over-collateralised) to 100x, any market,
    side and margin mode, with or without an entry price and a maintenance margin override."""
    current = draw(prices)
    entry = draw(st.none() | prices)
    size = draw(sizes)
    leverage = draw(st.floats(min_value=0.05, max_value=100.0))
    collateral = size * (current if entry is None else entry) / leverage
    mmr = draw(st.none() | st.floats(min_value=0.001, max_value=0.5))
    amount = None if mmr is None else draw(st.none() | st.floats(min_value=0.0, max_value=1.0))
    pos = PositionInput(
        market=draw(st.sampled_from(["SOL", "BTC", "ETH", "sol-perp", "bitcoin"])), side=draw(sides), size=size,
        entry_price=entry, collateral=collateral, leverage=draw(st.none() | st.just(leverage)),
        margin_mode=draw(st.sampled_from(["isolated", "cross"])), maintenance_margin_ratio=mmr,
        maintenance_amount=None if amount is None else amount * size * (current if entry is None else entry) * mmr,
    )
    return pos, current


return_lists = st.lists(st.floats(min_value=-0.9, max_value=3.0, allow_nan=False, allow_infinity=False),
                        min_size=2, max_size=60)


@PROFILE
@given(drawn=positions(), returns=st.none() | return_lists)
def test_no_nan_or_inf_for_any_valid_input(drawn: tuple[PositionInput, float], returns: list[float] | None,
                                           sol_year: pd.Series) -> None:
    """Valid input gives finite numbers everywhere, or a documented ``InvalidInput`` (leverage over 100x, or
    collateral below maintenance margin at entry), never a NaN, an infinity or another exception."""
    position, current = drawn
    closes = None if returns is not None else sol_year
    try:
        result = assess(position, closes=closes, returns=returns, current_price=current)
    except InvalidInput as exc:
        assert "liquidated as it opens" in str(exc), str(exc)  # e.g. 100x on a 1% maintenance margin
        return
    assert finite(result.model_dump())
    assert 0 <= result.risk_score <= 100 and result.recommended_max_size >= 0
    if result.liquidation_price is not None:
        assert result.liquidation_price > 0


@PROFILE
@given(side=sides, market=st.sampled_from(["SOL", "BTC", "ETH"]), notional=st.floats(min_value=10, max_value=2e6),
       lev_a=leverages, lev_b=leverages, data=st.booleans())
def test_score_is_monotone_in_leverage(side: str, market: str, notional: float, lev_a: float, lev_b: float,
                                       data: bool, sol_year: pd.Series, btc_year: pd.Series) -> None:
    closes = sol_year if data else btc_year
    price = float(closes.iloc[-1])
    low, high = sorted((lev_a, lev_b))

    def score(leverage: float) -> float | None:
        pos = PositionInput(market=market, side=side, size=notional / price, collateral=notional / leverage)
        try:
            return assess(pos, closes=closes).risk_score
        except InvalidInput:  # too much leverage for the tier's maintenance margin: no score to compare
            return None

    at_low, at_high = score(low), score(high)
    assume(at_low is not None and at_high is not None)
    assert at_high >= at_low - 1e-9


def test_properties_hold_on_returns_of_the_bundled_data(sol_year: pd.Series) -> None:
    """A concrete anchor for the properties above: doubling leverage on SOL raises the score."""
    price = float(sol_year.iloc[-1])
    returns = simple_returns(sol_year.to_numpy()).tolist()
    scores = [assess(PositionInput(market="SOL", side="long", size=10, collateral=10 * price / lev),
                     returns=returns, current_price=price).risk_score for lev in (1, 2, 4, 8, 16)]
    assert scores == sorted(scores) and scores[0] < scores[-1]
    assert np.all(np.isfinite(scores))
