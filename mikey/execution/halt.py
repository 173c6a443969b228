"""The kill switch: ``mikey halt`` stops every new position at once, in every MIKEY process, until it is lifted.

The halt is one row in the execution database (``db.py``), not a file or a process-local flag: a gate in another
process reads it on its next check, and ``ProposalStore.claim_for_submission`` reads it in the same transaction that
claims, so no order is claimed after a halt commits. Closing and reducing positions stay allowed: a halt is for
stopping new risk, and trapping a user in an open position would add risk instead.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import closing
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mikey.domain.utc import require_utc, utc_now
from mikey.errors import InvalidInput, RiskLimitExceeded
from mikey.execution import db
from mikey.settings import Settings

OrderKind = Literal["open", "close", "reduce"]
"""What an order does to the user's exposure: only ``open`` adds risk, so only ``open`` is stopped by a halt."""

ALLOWED_WHEN_HALTED: frozenset[OrderKind] = frozenset({"close", "reduce"})


class HaltState(BaseModel):
    """Why trading is halted, who halted it and since when."""

    model_config = ConfigDict(frozen=True)

    reason: str = Field(min_length=1)
    actor: str = Field(min_length=1, description="Who pulled the switch: a user id, 'cli', an automatic guard.")
    since: datetime

    _utc = field_validator("since")(require_utc)

    def describe(self) -> str:
        return f"trading halted since {self.since:%Y-%m-%d %H:%M:%S} UTC by {self.actor}: {self.reason}"


def read_halt(conn: sqlite3.Connection) -> HaltState | None:
    """The halt as ``conn`` sees it (inside its transaction, if one is open)."""
    row = conn.execute("SELECT reason, actor, since FROM halt WHERE id = 1").fetchone()
    if row is None:
        return None
    return HaltState(reason=row[0], actor=row[1], since=datetime.fromisoformat(row[2]))


def refuse_if_halted(state: HaltState | None, kind: OrderKind) -> None:
    """Raise ``RiskLimitExceeded`` if ``state`` is a halt and ``kind`` adds risk."""
    if state is not None and kind not in ALLOWED_WHEN_HALTED:
        raise RiskLimitExceeded(f"{state.describe()}. New positions are refused; closing or reducing one is "
                                "allowed. `mikey halt --off` resumes trading.")


class KillSwitch:
    """The halt flag in the execution database, shared by every process that opens the same file."""

    def __init__(self, path: Path, *, clock: Callable[[], datetime] = utc_now) -> None:
        self._path = Path(path)
        self._clock = clock
        db.initialise(self._path)

    @classmethod
    def from_settings(cls, settings: Settings, *, clock: Callable[[], datetime] = utc_now) -> KillSwitch:
        return cls(settings.execution_db, clock=clock)

    def halt(self, reason: str, actor: str) -> HaltState:
        """Stop new positions now. Halting while halted keeps the first halt (its reason and time) and returns it:
        an emergency stop must never fail because someone pulled it first."""
        if not reason.strip() or not actor.strip():
            raise InvalidInput("a halt needs a reason and an actor (who halts, and why)")
        state = HaltState(reason=reason.strip(), actor=actor.strip(), since=require_utc(self._clock()))
        with db.immediate(self._path) as conn:
            current = read_halt(conn)
            if current is not None:
                return current
            conn.execute("INSERT INTO halt (id, reason, actor, since) VALUES (1, ?, ?, ?)",
                         (state.reason, state.actor, state.since.isoformat()))
        return state

    def resume(self, actor: str) -> HaltState:
        """Lift the halt and return it; ``InvalidInput`` when trading is not halted (nothing to resume)."""
        if not actor.strip():
            raise InvalidInput("resuming trading needs an actor (who lifts the halt)")
        with db.immediate(self._path) as conn:
            current = read_halt(conn)
            if current is None:
                raise InvalidInput("trading is not halted; there is nothing to resume")
            conn.execute("DELETE FROM halt WHERE id = 1")
        return current

    def halted(self) -> HaltState | None:
        """The current halt, or None when trading is allowed."""
        with closing(db.connect(self._path)) as conn:
            return read_halt(conn)

    def check_not_halted(self, kind: OrderKind) -> None:
        """The gate before a submission: ``RiskLimitExceeded`` for an ``open`` while halted; close/reduce pass."""
        refuse_if_halted(self.halted(), kind)
