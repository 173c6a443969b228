"""Liquidation prices against worked examples published by exchanges, isolated and cross, long and short.

Sources (each test names the one it reproduces):

[BN-FAQ]  Binance, "How to Calculate Liquidation Price of USDⓈ-M Futures Contracts",
          https://www.binance.com/en/support/faq/how-to-calculate-liquidation-price-of-usd%E2%93%A2-m-futures-contracts-b3c689c1f50a44cabb3a84e663b81d93
          LP = (WB - TMM1 + UPNL1 + cumB - Side x Position x EP) / (Position x MMR - Side x Position), one-way mode;
          isolated: WB = isolated wallet balance, TMM = UPNL = 0. Tier examples: a 264,000 USDT BTCUSDT position has
          MMR 1%; a 500,000 USDT one has maintenance amount 1,300 = 250,000 x (1% - 0.5%) + 50. When the notional at
          the liquidation price falls in another tier than at entry, recompute with that tier.
[BN-LIQ]  Binance FAQ on avoiding liquidation, https://www.binance.com/en/support/faq/25edcd7fe0e544839d0847b8cbb2e400
          "wallet balance of 500 USDT ... long BTCUSDT position worth 1,000 USDT with 20x leverage at $50,000 ...
          your liquidation price will be $25,100.40" (cross margin: the wallet balance backs the position).
[BY-HC]   Bybit, "Liquidation Price (USDT Contract)",
          https://help.bybit.com/hc/en-us/articles/900000181046-Liquidation-Price-USDT-Contract-
          isolated: LP = Entry x (1 - IMR + MMR) for a long, Entry x (1 + IMR - MMR) for a short;
          long 1 BTC at 10,000 USDT, 50x, MMR 0.5% -> 9,850; short 1 BTC at 8,000 USDT, 40x -> 8,160.
          Cross, example 1: 2 BTC long at 10,000 USDT, available balance 2,000 USDT, IM = 2 x 10,000 x 1% = 200,
          MM = 2 x 10,000 x 0.5% = 100, total sustainable loss = 2,000 + 200 - 100 = 2,100 USDT.
[BY-TN]   Bybit, "Liquidation Price (USDT Contract)" (current wording),
          https://testnet.bybit.com/en-US/help-center/s/article/Liquidation-Price-USDT-Contract
          LP(long) = Entry - (IM - MM) / Size; 1 BTC long at 20,000 USDT, 50x, MMR 0.5%: IM 400, MM 100, LP 19,700.

Binance takes the maintenance margin on the notional at the liquidation price (``basis="mark"``); Bybit on the
entry notional (``basis="entry"``). Each example is checked in its venue's basis.
"""

from __future__ import annotations

import math

import pytest

from mikey.errors import InvalidInput
from mikey.risk import liquidation as liq

BTC = liq.DEFAULT_TIERS["BTC"]


# --- Binance (mark basis) ----------------------------------------------------------------------------------------


def test_binance_cross_long_published_example() -> None:
    """[BN-LIQ]: WB 500 USDT, 1,000 USDT of BTCUSDT long at 50,000 (0.02 BTC), tier 1 MMR 0.4% -> 25,100.40."""
    lp = liq.cross_liquidation_price("long", 0.02, 50_000, 500, BTC)

    assert lp is not None and round(lp, 2) == 25_100.40
    # the same with the FAQ formula written out: (500 + 0 - 1 x 0.02 x 50,000) / (0.02 x 0.004 - 1 x 0.02)
    assert lp == pytest.approx((500 + 0 - 0.02 * 50_000) / (0.02 * 0.004 - 0.02), rel=1e-12)


def test_binance_cross_counts_other_positions() -> None:
    """[BN-FAQ] cross formula: TMM1 (other positions' maintenance) lowers WB, UPNL1 (their PnL) adds to it."""
    base = liq.cross_liquidation_price("long", 0.02, 50_000, 500, BTC)
    burdened = liq.cross_liquidation_price("long", 0.02, 50_000, 500, BTC, other_maintenance=100)
    helped = liq.cross_liquidation_price("long", 0.02, 50_000, 500, BTC, other_unrealized_pnl=100)

    assert burdened == pytest.approx((500 - 100 - 1_000) / (0.02 * 0.004 - 0.02))
    assert helped == pytest.approx((500 + 100 - 1_000) / (0.02 * 0.004 - 0.02))
    assert helped < base < burdened


def test_binance_tier_examples_in_default_btc_table() -> None:
    """[BN-FAQ]: 264,000 USDT -> MMR 1%; 500,000 USDT -> maintenance amount 1,300 (= 250,000 x 0.5% + 50)."""
    assert liq.tier_for_notional(BTC, 264_000).mmr == 0.01
    assert liq.tier_for_notional(BTC, 500_000).maintenance_amount == pytest.approx(1_300)
    assert [t.maintenance_amount for t in BTC[:4]] == pytest.approx([0, 50, 1_300, 16_300])


def test_binance_isolated_short_formula() -> None:
    """[BN-FAQ] isolated, short 10 BTC at 50,000 (500,000 USDT: tier 3, MMR 1%, cum 1,300) with 50,000 USDT:
    LP = (50,000 + 1,300 + 10 x 50,000) / (10 x 0.01 + 10) = 551,300 / 10.1 = 54,584.16; its notional 545,842 is
    still in tier 3, so no recomputation."""
    lp = liq.isolated_liquidation_price("short", 10, 50_000, 50_000, BTC)

    assert lp == pytest.approx(551_300 / 10.1, rel=1e-12)
    assert round(lp, 2) == 54_584.16
    assert liq.tier_for_notional(BTC, 10 * lp).mmr == 0.01


def test_binance_isolated_long_recomputes_in_the_tier_at_the_liquidation_price() -> None:
    """[BN-FAQ] note on tiers: long 6 BTC at 50,000 (300,000 USDT, tier 3 at entry) with 60,000 USDT.
    Tier 3 gives (60,000 + 1,300 - 300,000) / (6 x 0.01 - 6) = 40,185.19, a 241,111 notional: tier 2, not 3.
    Tier 2 gives (60,000 + 50 - 300,000) / (6 x 0.005 - 6) = 40,192.63, notional 241,156: consistent."""
    lp = liq.isolated_liquidation_price("long", 6, 50_000, 60_000, BTC)

    assert lp == pytest.approx((60_000 + 50 - 300_000) / (6 * 0.005 - 6), rel=1e-12)
    assert round(lp, 2) == 40_192.63
    assert liq.tier_for_notional(BTC, 6 * lp).mmr == 0.005


def test_binance_isolated_long_fully_collateralised_cannot_be_liquidated() -> None:
    """[BN-FAQ]: "If the liquidation price is less than 0, the UI display would be '--'": here None."""
    assert liq.isolated_liquidation_price("long", 1, 20_000, 20_000, BTC) is None  # LP = 0
    assert liq.isolated_liquidation_price("long", 1, 20_000, 30_000, BTC) is None  # LP < 0
    short = liq.isolated_liquidation_price("short", 1, 20_000, 1_000_000, BTC)
    assert short is not None and short > 20_000  # a linear short always has one


def test_mark_basis_liquidation_is_where_margin_ratio_reaches_one() -> None:
    """The mark basis is the exact root: at LP, margin balance equals maintenance margin (ratio 1)."""
    for side, size, entry, wb in [("long", 0.02, 50_000, 500), ("short", 10, 50_000, 50_000),
                                  ("long", 6, 50_000, 60_000), ("short", 3, 2_000, 400)]:
        lp = liq.liquidation_price(side, size, entry, wb, BTC)
        assert lp is not None
        assert liq.margin_ratio(side, size, entry, wb, BTC, mark_price=lp) == pytest.approx(1.0, rel=1e-9)


def test_binance_margin_ratio_at_entry() -> None:
    """Binance's margin ratio = maintenance margin / margin balance: 1,000 x 0.4% / 500 = 0.8%."""
    assert liq.margin_ratio("long", 0.02, 50_000, 500, BTC) == pytest.approx(0.008)
    assert liq.margin_ratio("long", 0.02, 50_000, 500, BTC, mark_price=25_000) == math.inf  # bankrupt


# --- Bybit (entry basis) -----------------------------------------------------------------------------------------


def test_bybit_isolated_long_published_example() -> None:
    """[BY-HC]: long 1 BTC at 10,000 USDT, 50x (IM 200), MMR 0.5% -> 10,000 x (1 - 2% + 0.5%) = 9,850."""
    lp = liq.isolated_liquidation_price("long", 1, 10_000, 10_000 / 50, liq.single_tier(0.005), basis="entry")
    assert lp == pytest.approx(9_850, abs=1e-9)


def test_bybit_isolated_short_published_example() -> None:
    """[BY-HC]: short 1 BTC at 8,000 USDT, 40x (IM 200), MMR 0.5% -> 8,000 x (1 + 2.5% - 0.5%) = 8,160."""
    lp = liq.isolated_liquidation_price("short", 1, 8_000, 8_000 / 40, liq.single_tier(0.005), basis="entry")
    assert lp == pytest.approx(8_160, abs=1e-9)


def test_bybit_isolated_long_current_example() -> None:
    """[BY-TN]: long 1 BTC at 20,000 USDT, 50x: IM 400, MM 100, LP = 20,000 - (400 - 100) = 19,700."""
    lp = liq.isolated_liquidation_price("long", 1, 20_000, 400, liq.single_tier(0.005), basis="entry")
    assert lp == pytest.approx(19_700, abs=1e-9)
    # the same position on Binance's mark basis: (1 x 20,000 - 400) / (1 x (1 - 0.005)) = 19,698.49
    mark = liq.isolated_liquidation_price("long", 1, 20_000, 400, liq.single_tier(0.005))
    assert mark == pytest.approx(19_600 / 0.995) and round(mark, 2) == 19_698.49


def test_bybit_cross_long_example() -> None:
    """[BY-HC] cross example 1: 2 BTC long at 10,000, available 2,000 + IM 200 = wallet balance 2,200; MM 100.
    Total sustainable loss 2,100 spread over 2 BTC: LP = 10,000 - 2,100 / 2 = 8,950."""
    lp = liq.cross_liquidation_price("long", 2, 10_000, 2_000 + 200, liq.single_tier(0.005), basis="entry")
    assert lp == pytest.approx(10_000 - 2_100 / 2, abs=1e-9)


def test_bybit_cross_short_mirror() -> None:
    """The [BY-HC] cross logic for a short: the same 2,100 USDT sustainable loss lifts LP to 10,000 + 1,050."""
    lp = liq.cross_liquidation_price("short", 2, 10_000, 2_200, liq.single_tier(0.005), basis="entry")
    assert lp == pytest.approx(11_050, abs=1e-9)


# --- distance, tiers ---------------------------------------------------------------------------------------------


def test_distance_to_liquidation() -> None:
    assert liq.distance_to_liquidation_pct("long", 90.0, 100.0) == pytest.approx(10.0)
    assert liq.distance_to_liquidation_pct("short", 110.0, 100.0) == pytest.approx(10.0)
    assert liq.distance_to_liquidation_pct("long", 105.0, 100.0) == pytest.approx(-5.0)  # already beyond
    assert liq.distance_to_liquidation_pct("long", None, 100.0) is None


@pytest.mark.parametrize("market", sorted(liq.DEFAULT_TIERS))
def test_default_tables_are_continuous_and_monotone(market: str) -> None:
    table = liq.DEFAULT_TIERS[market]
    assert liq.validate_tiers(table) == table
    for low, high in zip(table, table[1:], strict=False):
        assert low.cap is not None
        assert low.maintenance_margin(low.cap) == pytest.approx(high.maintenance_margin(low.cap))
        assert high.mmr >= low.mmr and high.max_leverage is not None and low.max_leverage is not None
        assert high.max_leverage <= low.max_leverage
        assert 1 / low.max_leverage > low.mmr  # initial margin above maintenance: a position can open


def test_tier_for_notional_boundaries() -> None:
    assert liq.tier_for_notional(BTC, 0).mmr == 0.004
    assert liq.tier_for_notional(BTC, 49_999.99).mmr == 0.004
    assert liq.tier_for_notional(BTC, 50_000).mmr == 0.005
    assert liq.tier_for_notional(BTC, 1e12).mmr == 0.5


def test_validate_tiers_refuses_broken_tables() -> None:
    with pytest.raises(InvalidInput, match="at least one"):
        liq.validate_tiers([])
    with pytest.raises(InvalidInput, match="start at notional 0"):
        liq.validate_tiers([liq.MarginTier(floor=10, cap=None, mmr=0.01)])
    with pytest.raises(InvalidInput, match="not at the previous cap"):
        liq.validate_tiers([liq.MarginTier(floor=0, cap=100, mmr=0.01), liq.MarginTier(floor=200, mmr=0.02)])
    with pytest.raises(InvalidInput, match="lower maintenance margin rate"):
        liq.validate_tiers([liq.MarginTier(floor=0, cap=100, mmr=0.02), liq.MarginTier(floor=100, mmr=0.01)])
    with pytest.raises(InvalidInput, match="jumps"):
        liq.validate_tiers([liq.MarginTier(floor=0, cap=100, mmr=0.01), liq.MarginTier(floor=100, mmr=0.02)])
    with pytest.raises(InvalidInput, match="no cap but is not the last"):
        liq.validate_tiers([liq.MarginTier(floor=0, mmr=0.01), liq.MarginTier(floor=100, mmr=0.02)])


def test_tier_table_derives_amounts_like_binance() -> None:
    table = liq.tier_table([(50_000, 125, 0.004), (250_000, 100, 0.005), (None, 50, 0.01)])
    assert [t.maintenance_amount for t in table] == pytest.approx([0, 50, 1_300])
    assert [t.floor for t in table] == [0, 50_000, 250_000]
