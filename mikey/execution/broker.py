"""The ``Broker`` protocol: where an approved order is executed, and the one place positions are read back from.

Three brokers implement it, chosen by ``MIKEY_BROKER`` (``open_broker``):

- ``paper`` (the default, ``mikey.execution.paper``): a SQLite ledger that fills at the oracle price with slippage
  and fees and accrues funding;
- ``solana`` (``mikey.execution.solana``): the QuantDesk perp program over JSON-RPC;
- ``sandbox``: the same Solana broker against an in-process LiteSVM running the program's real bytecode.

Exactly once is shared between the proposal store and the broker. The store lets one caller claim a proposal; the
broker keys every order by ``OrderRequest.client_id`` (the proposal's id), so ``submit`` of an id the broker has
already executed returns that execution instead of executing again (a retry after a timeout), and ``lookup`` tells a
restarted MIKEY whether a claimed proposal reached the broker before a crash (reconciliation).

Prices and sizes cross this boundary as floats in USD and base units; a broker that keeps fixed point (Solana's
6 decimals) converts at its edge and says so in its fills.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mikey.domain.utc import optional_utc, require_utc
from mikey.errors import ConfigError
from mikey.execution.halt import OrderKind
from mikey.settings import Settings

Side = Literal["long", "short"]
PositionStatus = Literal["open", "closed"]


class OrderRequest(BaseModel):
    """One approved order, as the broker receives it: exactly the terms the human approved."""

    model_config = ConfigDict(frozen=True, allow_inf_nan=False, extra="forbid")

    client_id: str = Field(min_length=1, description="The proposal's id: the broker's idempotency key.")
    user_id: str = Field(min_length=1)
    kind: OrderKind = "open"
    market: str = Field(min_length=1)
    side: Side = Field(description="The position's side (for close/reduce: the side of the position closed).")
    size: float = Field(gt=0, description="Base units to open, or to close.")
    leverage: float = Field(gt=0, le=100)
    collateral: float = Field(gt=0, description="Margin in USD(C) committed (open) or released (close/reduce).")
    price_bound: float = Field(gt=0, description="Worst acceptable fill price.")
    position_id: str | None = Field(None, description="The position closed or reduced (close/reduce only).")


class Fill(BaseModel):
    """What the broker did with one order."""

    model_config = ConfigDict(frozen=True, allow_inf_nan=False)

    client_id: str
    kind: OrderKind
    market: str
    side: Side
    size: float = Field(gt=0)
    price: float = Field(gt=0, description="The fill price, slippage included.")
    fee: float = Field(ge=0, description="USD paid to trade.")
    realised_pnl: float = Field(0.0, description="USD realised by a close or reduce (fees and funding included).")
    position_id: str
    broker_ref: str = Field(description="The broker's id of the execution: a paper id, a transaction signature.")
    filled_at: datetime

    _utc = field_validator("filled_at")(require_utc)


class BrokerPosition(BaseModel):
    """A position as the broker holds it."""

    model_config = ConfigDict(frozen=True, allow_inf_nan=False)

    id: str
    user_id: str
    market: str
    side: Side
    size: float = Field(ge=0, description="Base units still open (0 once closed).")
    entry_price: float = Field(gt=0)
    collateral: float = Field(ge=0, description="Margin still committed, USD.")
    leverage: float = Field(gt=0)
    status: PositionStatus
    opened_at: datetime
    closed_at: datetime | None = None
    exit_price: float | None = Field(None, description="Size-weighted price of every close and reduce, if any.")
    realised_pnl: float = Field(0.0, description="USD realised so far (price, fees and funding).")
    fees: float = Field(0.0, ge=0, description="USD paid in fees so far.")
    funding: float = Field(0.0, description="USD of funding paid (positive) or received (negative) so far.")
    unreported_funding: float = Field(
        0.0, description="Funding accrued since the position's last fill: in ``funding`` and ``realised_pnl``, but in "
        "no fill's realised PnL yet (what a day's PnL adds to the fills' realised PnL).")
    liquidation_price: float | None = Field(None, description="The broker's own liquidation price, if it keeps one.")
    proposal_id: str | None = Field(None, description="The proposal that opened it.")

    _utc = field_validator("opened_at")(require_utc)
    _utc_optional = field_validator("closed_at")(optional_utc)

    def unrealised_pnl(self, price: float) -> float:
        """USD the open size would realise at ``price`` before fees (funding accrued so far is in ``funding``)."""
        sign = 1.0 if self.side == "long" else -1.0
        return sign * (price - self.entry_price) * self.size


@runtime_checkable
class Broker(Protocol):
    """Executes approved orders once each and reports positions."""

    name: str

    def submit(self, order: OrderRequest, *, oracle_price: float) -> Fill:
        """Execute ``order`` at ``oracle_price`` (the price the gates validated), or return the earlier execution of
        the same ``client_id``. Raises ``OrderRejected`` (the broker or program refused it, nothing executed) or
        ``BrokerUnavailable`` (unknown whether it executed: reconcile with ``lookup``)."""
        ...

    def lookup(self, client_id: str) -> Fill | None:
        """The execution of ``client_id``, or None when the broker never executed it."""
        ...

    def positions(self, user_id: str, *, include_closed: bool = False) -> list[BrokerPosition]:
        """The user's positions, open ones first, newest first."""
        ...

    def position(self, position_id: str) -> BrokerPosition:
        """One position by id (``NotFound`` when there is none)."""
        ...

    def close(self) -> None:
        """Release connections and files."""
        ...


def open_broker(settings: Settings) -> Broker:
    """The broker ``settings.broker`` names, built at the composition root."""
    if settings.broker == "paper":
        from mikey.execution.paper import PaperBroker

        return PaperBroker.from_settings(settings)
    if settings.broker in ("solana", "sandbox"):
        from mikey.execution.solana.broker import SolanaBroker

        return SolanaBroker.from_settings(settings)
    raise ConfigError(f"unknown broker {settings.broker!r}: expected paper, solana or sandbox")
