"""Margin maths of linear USD-margined perpetuals: liquidation price, maintenance-margin tiers, margin ratio, distance.

Conventions (one-way mode, one position in the market, prices in USD, ``size`` in base units, always positive):

- ``side`` is +1 for a long and -1 for a short; notional = size x price.
- Maintenance margin on a notional N is ``MM = N x MMR - maintenance_amount``, with MMR and amount from the tier that
  N falls in. The amounts are the exchanges' "cum" values, which keep MM continuous across tier boundaries.
- Margin balance at mark price P is ``WB + side x size x (P - entry)``. A position is liquidated when its margin
  balance falls to its maintenance margin. For isolated margin WB is the collateral posted to the position; for cross
  margin WB is the account's wallet balance, less the maintenance margin of its other positions (``other_maintenance``)
  plus their unrealised PnL (``other_unrealized_pnl``).

Solving "margin balance = maintenance margin" for P gives Binance's USDⓈ-M formula (its FAQ "How to Calculate
Liquidation Price of USDⓈ-M Futures Contracts"), reduced to one position in one-way mode::

    LP = (WB - TMM1 + UPNL1 + cum - side x size x entry) / (size x MMR - side x size)

There MM is taken on the notional *at the liquidation price* (``basis="mark"``, the default: it is the exact root of
the condition above), so the tier is the one the notional at LP falls in: each tier is tried and the consistent one
kept, as the FAQ prescribes. Bybit's USDT-contract help pages instead fix MM at the *entry* notional
(``basis="entry"``)::

    LP = entry - side x (WB - TMM1 + UPNL1 - MM(entry notional)) / size

The two differ by a fraction of MMR (e.g. 1 BTC long at 20,000 with 400 USDT: 19,698.49 vs 19,700).

A long whose LP is at or below zero cannot be liquidated (its collateral covers a fall of the price to zero): the
functions return None, as exchanges show "--". A linear short always has a finite LP.

The default tier tables below are **illustrative**, modelled on Binance's USDⓈ-M brackets (BTC and ETH as once
published; SOL on the altcoin pattern), not any venue's current schedule. Pass your venue's own tables to override.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from mikey.errors import InvalidInput

Side = Literal["long", "short"]
MaintenanceBasis = Literal["mark", "entry"]

_REL_TOL = 1e-9  # relative slack when a notional is compared with a tier boundary (float rounding only)


class MarginTier(BaseModel):
    """One maintenance-margin bracket: notionals in [floor, cap) use this MMR and maintenance amount."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    floor: float = Field(ge=0, description="Lowest notional (USD) of the bracket.")
    cap: float | None = Field(None, gt=0, description="Notional (USD) where the next bracket starts; None: no limit.")
    max_leverage: float | None = Field(None, gt=0, description="Highest leverage the venue allows in this bracket.")
    mmr: float = Field(gt=0, lt=1, description="Maintenance margin rate.")
    maintenance_amount: float = Field(0.0, ge=0, description="Amount (USD) deducted from notional x MMR ('cum').")

    def maintenance_margin(self, notional: float) -> float:
        """Maintenance margin (USD) of ``notional`` under this bracket."""
        return notional * self.mmr - self.maintenance_amount


TierTable = tuple[MarginTier, ...]


def tier_table(rows: Iterable[tuple[float | None, float, float]]) -> TierTable:
    """Brackets from ``(cap, max_leverage, mmr)`` rows, lowest first, with floors and maintenance amounts derived.

    The amount of bracket n is ``floor_n x (mmr_n - mmr_(n-1)) + amount_(n-1)`` (Binance's "Maintenance Amount
    formula"), which makes the maintenance margin continuous at every boundary.
    """
    tiers: list[MarginTier] = []
    floor, previous_mmr, amount = 0.0, 0.0, 0.0
    for cap, max_leverage, mmr in rows:
        amount = floor * (mmr - previous_mmr) + amount if tiers else 0.0
        tiers.append(MarginTier(floor=floor, cap=cap, max_leverage=max_leverage, mmr=mmr, maintenance_amount=amount))
        if cap is None:
            break
        floor, previous_mmr = cap, mmr
    return validate_tiers(tiers)


def validate_tiers(tiers: Sequence[MarginTier]) -> TierTable:
    """``tiers`` as a table, after checking it is usable: raises ``InvalidInput`` naming the first problem.

    A table starts at notional 0, its brackets follow each other without gaps, only the last may be unbounded, MMR
    never falls from one bracket to the next, and the maintenance margin is continuous at each boundary (so that the
    liquidation price has exactly one solution).
    """
    table = tuple(tiers)
    if not table:
        raise InvalidInput("a margin tier table needs at least one bracket")
    if table[0].floor != 0:
        raise InvalidInput(f"the first margin bracket must start at notional 0, not {table[0].floor:g}")
    for i, (low, high) in enumerate(zip(table, table[1:], strict=False), start=1):
        if low.cap is None:
            raise InvalidInput(f"margin bracket {i} has no cap but is not the last")
        if not math.isclose(high.floor, low.cap, rel_tol=_REL_TOL):
            raise InvalidInput(f"margin bracket {i + 1} starts at {high.floor:g}, not at the previous cap {low.cap:g}")
        if high.mmr < low.mmr:
            raise InvalidInput(f"margin bracket {i + 1} has a lower maintenance margin rate than bracket {i}")
        before, after = low.maintenance_margin(low.cap), high.maintenance_margin(low.cap)
        if not math.isclose(before, after, rel_tol=1e-6, abs_tol=1e-6):
            amount = high.maintenance_amount + after - before
            raise InvalidInput(f"maintenance margin jumps at notional {low.cap:g} ({before:g} -> {after:g}); "
                               f"bracket {i + 1}'s maintenance amount should be {amount:g}")
    for tier in table:
        if tier.cap is not None and tier.cap <= tier.floor:
            raise InvalidInput(f"margin bracket [{tier.floor:g}, {tier.cap:g}) is empty")
    return table


def single_tier(mmr: float, maintenance_amount: float = 0.0) -> TierTable:
    """A one-bracket table for an explicit maintenance margin rate (and amount), e.g. from a position's input."""
    return (MarginTier(floor=0.0, cap=None, mmr=mmr, maintenance_amount=maintenance_amount),)


# Illustrative defaults modelled on exchange brackets: (cap USD, max leverage, MMR).
DEFAULT_TIERS: Mapping[str, TierTable] = {
    "BTC": tier_table([
        (50_000, 125, 0.004), (250_000, 100, 0.005), (1_000_000, 50, 0.01), (10_000_000, 20, 0.025),
        (20_000_000, 10, 0.05), (50_000_000, 5, 0.10), (100_000_000, 4, 0.125), (200_000_000, 3, 0.15),
        (300_000_000, 2, 0.25), (None, 1, 0.50),
    ]),
    "ETH": tier_table([
        (10_000, 100, 0.005), (100_000, 75, 0.0065), (500_000, 50, 0.01), (1_000_000, 25, 0.02),
        (2_000_000, 10, 0.05), (5_000_000, 5, 0.10), (10_000_000, 4, 0.125), (20_000_000, 3, 0.15),
        (None, 2, 0.25),
    ]),
    "SOL": tier_table([
        (50_000, 50, 0.01), (250_000, 20, 0.025), (1_000_000, 10, 0.05), (5_000_000, 5, 0.10),
        (10_000_000, 4, 0.125), (20_000_000, 2, 0.25), (None, 1, 0.50),
    ]),
}


def side_sign(side: Side) -> int:
    """+1 for a long, -1 for a short."""
    return 1 if side == "long" else -1


def tier_for_notional(tiers: Sequence[MarginTier], notional: float) -> MarginTier:
    """The bracket ``notional`` falls in (the last bracket beyond the table's end)."""
    for tier in tiers:
        if tier.cap is None or notional < tier.cap:
            return tier
    return tiers[-1]


def maintenance_margin(tiers: Sequence[MarginTier], notional: float) -> float:
    """Maintenance margin (USD) of ``notional`` under the table."""
    return tier_for_notional(tiers, notional).maintenance_margin(notional)


def liquidation_price(side: Side, size: float, entry_price: float, wallet_balance: float,
                      tiers: Sequence[MarginTier], *, basis: MaintenanceBasis = "mark", other_maintenance: float = 0.0,
                      other_unrealized_pnl: float = 0.0) -> float | None:
    """Mark price at which the position's margin balance falls to its maintenance margin; None if that is <= 0.

    ``wallet_balance`` is the collateral (isolated) or the account's wallet balance (cross); ``other_maintenance``
    and ``other_unrealized_pnl`` are TMM1 and UPNL1 of the Binance formula (cross margin only). See the module
    docstring for both bases.
    """
    s = side_sign(side)
    balance = wallet_balance - other_maintenance + other_unrealized_pnl
    if basis == "entry":
        mm = maintenance_margin(tiers, size * entry_price)
        price = entry_price - s * (balance - mm) / size
        return price if price > 0 else None
    best, best_miss = 0.0, math.inf
    for i, tier in enumerate(tiers):
        price = (balance + tier.maintenance_amount - s * size * entry_price) / (size * tier.mmr - s * size)
        notional = size * price
        low = -math.inf if i == 0 else tier.floor * (1 - _REL_TOL)
        high = math.inf if tier.cap is None else tier.cap * (1 + _REL_TOL)
        miss = low - notional if notional < low else notional - high if notional > high else 0.0
        if miss < best_miss:
            best, best_miss = price, miss
            if miss == 0.0:
                break  # margin balance - MM is strictly monotone in the price, so the consistent bracket is unique
    return best if best > 0 else None


def isolated_liquidation_price(side: Side, size: float, entry_price: float, collateral: float,
                               tiers: Sequence[MarginTier], *, basis: MaintenanceBasis = "mark") -> float | None:
    """Liquidation price of an isolated position backed by ``collateral`` (TMM1 = UPNL1 = 0)."""
    return liquidation_price(side, size, entry_price, collateral, tiers, basis=basis)


def cross_liquidation_price(side: Side, size: float, entry_price: float, account_balance: float,
                            tiers: Sequence[MarginTier], *, basis: MaintenanceBasis = "mark",
                            other_maintenance: float = 0.0, other_unrealized_pnl: float = 0.0) -> float | None:
    """Liquidation price of a cross-margined position: the whole ``account_balance`` backs it."""
    return liquidation_price(side, size, entry_price, account_balance, tiers, basis=basis,
                             other_maintenance=other_maintenance, other_unrealized_pnl=other_unrealized_pnl)


def margin_ratio(side: Side, size: float, entry_price: float, wallet_balance: float, tiers: Sequence[MarginTier],
                 *, mark_price: float | None = None) -> float:
    """Maintenance margin / margin balance at ``mark_price`` (default: the entry price); 1.0 or more is liquidation.

    Returns ``math.inf`` when the margin balance is zero or negative (the position is bankrupt).
    """
    price = entry_price if mark_price is None else mark_price
    balance = wallet_balance + side_sign(side) * size * (price - entry_price)
    if balance <= 0:
        return math.inf
    return max(0.0, maintenance_margin(tiers, size * price)) / balance


def distance_to_liquidation_pct(side: Side, liquidation: float | None, current_price: float) -> float | None:
    """How far the price may move against the position before liquidation, in % of ``current_price``.

    None when there is no liquidation price; negative when the price is already beyond it.
    """
    if liquidation is None:
        return None
    return side_sign(side) * (current_price - liquidation) / current_price * 100.0
