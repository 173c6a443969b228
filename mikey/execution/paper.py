"""The paper broker: approved orders fill in a SQLite ledger (``settings.paper_db``), never on a market.

Conventions:

- Price: the oracle price moved against the order by ``slippage``. A buy (opening a long, closing or reducing a
  short) fills at ``oracle * (1 + slippage)``, a sell at ``oracle * (1 - slippage)``. A fill worse than the order's
  ``price_bound`` is refused and nothing is written.
- Fee: ``fee_rate * fill price * size`` on every fill, realised when paid (an open's fill realises ``-fee``).
- Funding: accrues continuously at ``funding_rate_hourly`` per hour on the entry notional (``entry_price * open
  size``); longs pay when the rate is positive, shorts receive. It is settled into the position's ``funding`` and
  ``realised_pnl`` by every close or reduce and by ``accrue_funding``; positions are read with it accrued to now.
  A close or reduce's fill includes the funding settled since the position's previous fill, so the fills of a closed
  position add up to its realised PnL.

Exactly once: ``fills.client_id`` is unique, and ``submit`` looks it up and writes the fill in one ``BEGIN IMMEDIATE``
transaction, so threads and processes racing on one order get one execution, and every one of them its fill.
"""

from __future__ import annotations

import math
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mikey.domain.utc import require_utc, utc_now
from mikey.errors import InvalidInput, NotFound, OrderRejected
from mikey.execution import db
from mikey.execution.broker import BrokerPosition, Fill, OrderRequest
from mikey.settings import Settings

SIZE_TOLERANCE = 1e-9
"""Relative difference under which two sizes are the same: a close must name the open size, within this."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS positions (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    market TEXT NOT NULL,
    side TEXT NOT NULL,
    size REAL NOT NULL,
    entry_price REAL NOT NULL,
    collateral REAL NOT NULL,
    leverage REAL NOT NULL,
    status TEXT NOT NULL,
    opened_at TEXT NOT NULL,
    closed_at TEXT,
    exit_price REAL,
    closed_size REAL NOT NULL,          -- base units closed so far: the weight of exit_price
    realised_pnl REAL NOT NULL,
    fees REAL NOT NULL,
    funding REAL NOT NULL,              -- settled funding, USD paid (positive) or received (negative)
    funding_settled_at TEXT NOT NULL,
    funding_reported REAL NOT NULL,     -- the part of funding already included in a fill's realised_pnl
    proposal_id TEXT
);
CREATE INDEX IF NOT EXISTS positions_user ON positions (user_id, status, opened_at);
CREATE TABLE IF NOT EXISTS fills (
    broker_ref TEXT PRIMARY KEY,
    client_id TEXT NOT NULL UNIQUE,
    user_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    market TEXT NOT NULL,
    side TEXT NOT NULL,
    size REAL NOT NULL,
    price REAL NOT NULL,
    fee REAL NOT NULL,
    realised_pnl REAL NOT NULL,
    position_id TEXT NOT NULL,
    filled_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS fills_user ON fills (user_id, filled_at);
"""

FILL_COLUMNS = ("broker_ref", "client_id", "user_id", "kind", "market", "side", "size", "price", "fee",
                "realised_pnl", "position_id", "filled_at")
POSITION_ORDER = "ORDER BY status = 'open' DESC, opened_at DESC, rowid DESC"

Row = dict[str, Any]


def _iso(moment: datetime) -> str:
    """Fixed-width UTC text (always with microseconds), so stored times compare correctly as strings."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _buys(order: OrderRequest) -> bool:
    """Whether the order buys: opening a long, or closing (reducing) a short."""
    return (order.side == "long") == (order.kind == "open")


def _require_finite(row: Row, what: str) -> None:
    for key, value in row.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidInput(f"{what} would record a {key} of {value!r}; nothing executed")


def _fill_from(row: sqlite3.Row) -> Fill:
    return Fill.model_validate({key: row[key] for key in FILL_COLUMNS if key != "user_id"})


class PaperBroker:
    """A ``Broker`` over a SQLite ledger, safe across threads and processes (one connection per operation).

    ``clock`` is injectable so tests can move time (and funding) instead of sleeping.
    """

    name = "paper"

    def __init__(self, path: Path, *, slippage: float, fee_rate: float, funding_rate_hourly: float,
                 clock: Callable[[], datetime] = utc_now) -> None:
        if not 0 <= slippage < 1:
            raise InvalidInput(f"paper slippage must be a fraction in [0, 1), not {slippage!r}")
        if not (math.isfinite(fee_rate) and fee_rate >= 0):
            raise InvalidInput(f"paper fee rate must be a finite fraction >= 0, not {fee_rate!r}")
        if not math.isfinite(funding_rate_hourly):
            raise InvalidInput(f"paper funding rate must be finite, not {funding_rate_hourly!r}")
        self._path = Path(path)
        self._slippage = slippage
        self._fee_rate = fee_rate
        self._funding_rate = funding_rate_hourly
        self._clock = clock
        self._path.parent.mkdir(parents=True, exist_ok=True)
        with closing(db.connect(self._path)) as conn:
            db.use_wal(conn)
            conn.executescript(SCHEMA)

    @classmethod
    def from_settings(cls, settings: Settings, *, clock: Callable[[], datetime] = utc_now) -> PaperBroker:
        return cls(settings.paper_db, slippage=settings.paper_slippage, fee_rate=settings.paper_fee_rate,
                   funding_rate_hourly=settings.paper_funding_rate_hourly, clock=clock)

    def _now(self) -> datetime:
        return require_utc(self._clock())

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        with closing(db.connect(self._path)) as conn:
            conn.row_factory = sqlite3.Row
            yield conn

    @contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        with db.immediate(self._path) as conn:
            conn.row_factory = sqlite3.Row
            yield conn

    # Executing ----------------------------------------------------------------------------------------------------

    def submit(self, order: OrderRequest, *, oracle_price: float) -> Fill:
        """Fill ``order`` at ``oracle_price`` with slippage, or return the earlier fill of its ``client_id``.

        Raises:
            InvalidInput: the oracle price is not a positive finite number.
            OrderRejected: the fill would be worse than the order's price bound, or a close or reduce does not match
                an open position of the user's (size included). Nothing is written.
        """
        if not (math.isfinite(oracle_price) and oracle_price > 0):
            raise InvalidInput(f"the oracle price must be a positive finite number, not {oracle_price!r}")
        earlier = self.lookup(order.client_id)
        if earlier is not None:
            return earlier
        with self._writing() as conn:
            row = conn.execute("SELECT * FROM fills WHERE client_id = ?", (order.client_id,)).fetchone()
            if row is not None:  # another thread or process filled it since the lookup above
                return _fill_from(row)
            now = self._now()
            price = self._fill_price(order, oracle_price)
            fill = self._open(conn, order, price, now) if order.kind == "open" else self._exit(conn, order, price, now)
            values = {**fill.model_dump(), "user_id": order.user_id, "filled_at": _iso(fill.filled_at)}
            conn.execute(f"INSERT INTO fills ({', '.join(FILL_COLUMNS)}) VALUES ({', '.join('?' * len(FILL_COLUMNS))})",
                         [values[column] for column in FILL_COLUMNS])
        return fill

    def _fill_price(self, order: OrderRequest, oracle_price: float) -> float:
        """The oracle price moved against the order; refused when worse than its bound."""
        buy = _buys(order)
        price = oracle_price * (1 + self._slippage) if buy else oracle_price * (1 - self._slippage)
        if (buy and price > order.price_bound) or (not buy and price < order.price_bound):
            raise OrderRejected(
                f"{order.kind} {order.market} {order.side} would {'buy' if buy else 'sell'} at {price:.8g}, "
                f"{'above' if buy else 'below'} the order's bound {order.price_bound:.8g}; nothing executed")
        return price

    def _open(self, conn: sqlite3.Connection, order: OrderRequest, price: float, now: datetime) -> Fill:
        if order.position_id is not None:
            raise OrderRejected(f"an open names a position ({order.position_id}); only a close or reduce does")
        fee = self._fee_rate * price * order.size
        position = {
            "id": uuid.uuid4().hex, "user_id": order.user_id, "market": order.market, "side": order.side,
            "size": order.size, "entry_price": price, "collateral": order.collateral, "leverage": order.leverage,
            "status": "open", "opened_at": _iso(now), "closed_at": None, "exit_price": None, "closed_size": 0.0,
            "realised_pnl": 0.0 - fee, "fees": fee, "funding": 0.0, "funding_settled_at": _iso(now),
            "funding_reported": 0.0, "proposal_id": order.client_id}
        _require_finite(position, f"opening {order.client_id}")
        conn.execute(f"INSERT INTO positions ({', '.join(position)}) VALUES ({', '.join('?' * len(position))})",
                     list(position.values()))
        return Fill(client_id=order.client_id, kind="open", market=order.market, side=order.side, size=order.size,
                    price=price, fee=fee, realised_pnl=0.0 - fee, position_id=position["id"],
                    broker_ref=f"paper-{uuid.uuid4().hex}", filled_at=now)

    def _exit(self, conn: sqlite3.Connection, order: OrderRequest, price: float, now: datetime) -> Fill:
        """Close or reduce: settle funding, then realise the closed part and release its share of collateral."""
        before = self._position_to_exit(conn, order)
        open_size = before["size"]
        closing_all = order.kind == "close"
        if closing_all and abs(order.size - open_size) > SIZE_TOLERANCE * open_size:
            raise OrderRejected(f"a close must close the whole open size {open_size:g} of position {before['id']}, "
                                f"not {order.size:g} (the approved order named its size)")
        if not closing_all and order.size >= open_size * (1 - SIZE_TOLERANCE):
            raise OrderRejected(f"a reduce must close less than the open size {open_size:g} of position "
                                f"{before['id']}, not {order.size:g}: use a close")
        closed = open_size if closing_all else order.size
        settled = self._settled(before, now)
        sign = 1.0 if before["side"] == "long" else -1.0
        fee = self._fee_rate * price * closed
        trade = sign * (price - before["entry_price"]) * closed - fee
        closed_size = before["closed_size"] + closed
        after = {
            **settled,
            "size": 0.0 if closing_all else open_size - closed,
            "collateral": 0.0 if closing_all else before["collateral"] * (open_size - closed) / open_size,
            "status": "closed" if closing_all else "open",
            "closed_at": _iso(now) if closing_all else None,
            "exit_price": ((before["exit_price"] or 0.0) * before["closed_size"] + price * closed) / closed_size,
            "closed_size": closed_size,
            "realised_pnl": settled["realised_pnl"] + trade,
            "fees": before["fees"] + fee,
            "funding_reported": settled["funding"]}
        fill = Fill(client_id=order.client_id, kind=order.kind, market=order.market, side=order.side, size=closed,
                    price=price, fee=fee, realised_pnl=trade - (settled["funding"] - before["funding_reported"]),
                    position_id=before["id"], broker_ref=f"paper-{uuid.uuid4().hex}", filled_at=now)
        self._write(conn, before, after)
        return fill

    @staticmethod
    def _position_to_exit(conn: sqlite3.Connection, order: OrderRequest) -> Row:
        if order.position_id is None:
            raise OrderRejected(f"a {order.kind} names no position to {order.kind}")
        row = conn.execute("SELECT * FROM positions WHERE id = ?", (order.position_id,)).fetchone()
        if row is None:
            raise OrderRejected(f"no position {order.position_id!r} to {order.kind}")
        position = dict(row)
        if position["user_id"] != order.user_id:
            raise OrderRejected(f"position {order.position_id} belongs to another user")
        if position["status"] != "open":
            raise OrderRejected(f"position {order.position_id} is already closed")
        if (position["market"], position["side"]) != (order.market, order.side):
            raise OrderRejected(f"position {order.position_id} is a {position['market']} {position['side']}, not a "
                                f"{order.market} {order.side}")
        return position

    # Funding ------------------------------------------------------------------------------------------------------

    def _settled(self, row: Row, now: datetime) -> Row:
        """``row`` with the funding accrued since its last settlement moved into ``funding`` and ``realised_pnl``."""
        since = datetime.fromisoformat(row["funding_settled_at"])
        hours = max((now - since).total_seconds() / 3600, 0.0)
        sign = 1.0 if row["side"] == "long" else -1.0
        owed = sign * self._funding_rate * row["entry_price"] * row["size"] * hours  # positive: the position pays
        return {**row, "funding": row["funding"] + owed, "realised_pnl": row["realised_pnl"] - owed,
                "funding_settled_at": _iso(max(now, since))}

    def accrue_funding(self) -> int:
        """Settle every open position's funding up to now, in one transaction; how many positions were settled.

        Idempotent at one clock time: a second call at the same instant settles nothing more.
        """
        with self._writing() as conn:
            now = self._now()
            rows = [dict(row) for row in conn.execute("SELECT * FROM positions WHERE status = 'open'").fetchall()]
            for row in rows:
                self._write(conn, row, self._settled(row, now))
        return len(rows)

    @staticmethod
    def _write(conn: sqlite3.Connection, before: Row, after: Row) -> None:
        """Compare-and-set the changed columns of an open position read in this transaction."""
        changed = {key: value for key, value in after.items() if value != before[key]}
        if not changed:
            return
        _require_finite(changed, f"position {before['id']}")
        assignments = ", ".join(f"{column} = ?" for column in changed)
        cursor = conn.execute(f"UPDATE positions SET {assignments} WHERE id = ? AND status = 'open' AND size = ?",
                              (*changed.values(), before["id"], before["size"]))
        if cursor.rowcount != 1:
            raise OrderRejected(f"position {before['id']} changed while it was being updated; nothing executed")

    # Reading ------------------------------------------------------------------------------------------------------

    def lookup(self, client_id: str) -> Fill | None:
        with self._reading() as conn:
            row = conn.execute("SELECT * FROM fills WHERE client_id = ?", (client_id,)).fetchone()
        return None if row is None else _fill_from(row)

    def positions(self, user_id: str, *, include_closed: bool = False) -> list[BrokerPosition]:
        """The user's positions, open ones first, newest first, with funding accrued to now."""
        where = "user_id = ?" + ("" if include_closed else " AND status = 'open'")
        with self._reading() as conn:
            rows = conn.execute(f"SELECT * FROM positions WHERE {where} {POSITION_ORDER}", (user_id,)).fetchall()
        now = self._now()
        return [self._position(dict(row), now) for row in rows]

    def position(self, position_id: str) -> BrokerPosition:
        """One position with funding accrued to now; ``NotFound`` when there is none."""
        with self._reading() as conn:
            row = conn.execute("SELECT * FROM positions WHERE id = ?", (position_id,)).fetchone()
        if row is None:
            raise NotFound(f"no paper position {position_id!r}")
        return self._position(dict(row), self._now())

    def _position(self, row: Row, now: datetime) -> BrokerPosition:
        settled = self._settled(row, now)  # computed for the reader, not written
        # None stays unset: BrokerPosition's UTC validator would be handed None for an open position's closed_at.
        fields = {key: settled[key] for key in BrokerPosition.model_fields if settled.get(key) is not None}
        fields["unreported_funding"] = settled["funding"] - settled["funding_reported"]
        return BrokerPosition.model_validate(fields)

    def fills(self, user_id: str | None = None, *, since: datetime | None = None) -> list[Fill]:
        """Fills, oldest first: the user's (or everyone's), at or after ``since`` when given."""
        where, args = [], []
        if user_id is not None:
            where.append("user_id = ?")
            args.append(user_id)
        if since is not None:
            where.append("filled_at >= ?")
            args.append(_iso(self._utc(since)))
        sql = "SELECT * FROM fills" + (f" WHERE {' AND '.join(where)}" if where else "")
        with self._reading() as conn:
            rows = conn.execute(sql + " ORDER BY filled_at, rowid", args).fetchall()
        return [_fill_from(row) for row in rows]

    def realised_since(self, user_id: str, since: datetime) -> float:
        """USD the user's fills at or after ``since`` realised (fees and funding included): the daily loss gate's."""
        with self._reading() as conn:
            (total,) = conn.execute("SELECT COALESCE(SUM(realised_pnl), 0.0) FROM fills WHERE user_id = ? AND "
                                    "filled_at >= ?", (user_id, _iso(self._utc(since)))).fetchone()
        return float(total)

    @staticmethod
    def _utc(moment: datetime) -> datetime:
        try:
            return require_utc(moment)
        except ValueError as exc:
            raise InvalidInput(str(exc)) from exc

    def close(self) -> None:
        """Nothing to release: every operation opens and closes its own connection."""
