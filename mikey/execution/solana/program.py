"""The QuantDesk program's conventions that its IDL does not carry: where markets and user accounts live, and units.

The IDL names ``market`` and ``user_account`` as plain accounts, without seeds. The program's own SDK and its
``create_user_account`` / ``initialize_market`` instructions (present in the binary, absent from this IDL) derive them
as ``[b"user_account", authority, account_index u16 LE]`` and ``[b"market", base_asset, quote_asset]``; MIKEY uses
the same derivations, so the sandbox creates its accounts where a real deployment keeps them.

Prices, sizes and USD amounts on-chain are 6-decimal fixed point. Conversions go through ``Decimal`` so that
``0.1`` becomes ``100000``, not ``99999``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal

from solders.pubkey import Pubkey

QUOTE_ASSET = "USDT"
"""Every QuantDesk market is quoted in this asset (the second seed of a market's address)."""
USER_ACCOUNT_INDEX = 0
"""MIKEY trades from the wallet's first sub-account."""
FIXED_POINT = 1_000_000
U64_MAX = 2**64 - 1


def market_address(program_id: Pubkey, symbol: str, quote: str = QUOTE_ASSET) -> tuple[Pubkey, int]:
    """The Market account of ``symbol`` (``BTC``) and its bump."""
    return Pubkey.find_program_address([b"market", symbol.encode(), quote.encode()], program_id)


def user_account_address(program_id: Pubkey, authority: Pubkey, index: int = USER_ACCOUNT_INDEX) -> tuple[Pubkey, int]:
    """The UserAccount of the wallet ``authority`` and its bump."""
    return Pubkey.find_program_address([b"user_account", bytes(authority), index.to_bytes(2, "little")], program_id)


def to_fixed(value: float) -> int:
    """USD or base units as 6-decimal fixed point (half-even rounding)."""
    return int((Decimal(str(value)) * FIXED_POINT).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def from_fixed(value: int) -> float:
    return float(Decimal(value) / FIXED_POINT)


def from_unix(seconds: int) -> datetime | None:
    """An on-chain timestamp as a UTC datetime; None for 0 (a field the program never set)."""
    return datetime.fromtimestamp(seconds, UTC) if seconds > 0 else None
