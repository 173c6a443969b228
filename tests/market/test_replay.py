"""ReplayFeed: the offline price feed must replay the published history exactly and never see past its clock."""

from __future__ import annotations

import csv
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from mikey.errors import DataUnavailable, UnknownSymbol
from mikey.market.replay import ReplayFeed, bundled_data_dir, read_daily_csv

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
HEADER = "Date,Open,High,Low,Close,Adj Close,Volume\n"


def utc(year: int, month: int, day: int) -> datetime:
    return datetime(year, month, day, tzinfo=UTC)


def write_csv(folder: Path, body: str, symbol: str = "SOL") -> Path:
    path = folder / f"{symbol}-USD.daily.csv"
    path.write_text(body)
    return path


@pytest.fixture(scope="module")
def feed() -> ReplayFeed:
    return ReplayFeed()


# --- the bundled history ---------------------------------------------------------------------------------------


def test_bundled_folder_holds_the_three_markets(feed: ReplayFeed) -> None:
    """The package ships BTC, ETH and SOL; a missing file would silently shrink the supported set."""
    assert bundled_data_dir().name == "data"
    assert feed.symbols() == ["BTC", "ETH", "SOL"]


@pytest.mark.skipif(not (SHARED_DATA / "SOL-USD.daily.csv").is_file(),
                    reason=f"shared market data not found at {SHARED_DATA}")
def test_sol_replay_reproduces_every_published_close(feed: ReplayFeed) -> None:
    """Closes are parsed from text as Decimal, so the replay equals the shared file row for row, not approximately."""
    with (SHARED_DATA / "SOL-USD.daily.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    published = [(date.fromisoformat(r["Date"]), Decimal(r["Close"])) for r in rows]

    replayed = [(c.ts.date(), c.close) for c in feed.candles("SOL")]

    assert len(published) == 971
    assert replayed == published


def test_quote_is_the_last_bar_without_a_clock(feed: ReplayFeed) -> None:
    """With no as-of date, 'now' is the last bar: 2023-08-29, and the 1-day change uses the bar before it."""
    quote = feed.quote("SOL")

    assert quote.symbol == "SOL"
    assert quote.price == Decimal("21.780764")
    assert quote.prev_close == Decimal("20.557100")
    assert quote.as_of == utc(2023, 8, 29)
    assert quote.source == "replay:SOL-USD.daily.csv"
    assert quote.change_pct == pytest.approx(5.952512757, abs=1e-8)


def test_candles_are_oldest_first_and_utc_midnight(feed: ReplayFeed) -> None:
    """Bars are stamped 00:00 UTC of their date, ordered oldest first, one per day of the range."""
    bars = feed.candles("BTC")

    assert bars[0].ts == utc(2021, 1, 1)
    assert bars[-1].ts == utc(2023, 8, 29)
    assert bars[-1].close == Decimal("27727.392578")
    assert all(a.ts < b.ts for a, b in zip(bars, bars[1:], strict=False))


# --- the as-of clock ----------------------------------------------------------------------------------------------


def test_as_of_clock_hides_later_bars() -> None:
    """A replayed session sees the market as it was: nothing after the as-of date is visible."""
    feed = ReplayFeed(as_of=date(2022, 6, 1))

    bars = feed.candles("SOL")
    quote = feed.quote("SOL")

    assert bars[-1].ts == utc(2022, 6, 1)
    assert len(bars) == 517  # 2021-01-01 .. 2022-06-01 inclusive
    assert quote.price == Decimal("40.269669")
    assert quote.prev_close == Decimal("45.767841")
    assert quote.as_of == utc(2022, 6, 1)


def test_explicit_end_after_the_clock_is_capped() -> None:
    """Asking for a later end date must not leak bars past the clock."""
    feed = ReplayFeed(as_of=date(2022, 6, 1))

    bars = feed.candles("SOL", start=utc(2022, 5, 30), end=utc(2023, 1, 1))

    assert [c.ts.date() for c in bars] == [date(2022, 5, 30), date(2022, 5, 31), date(2022, 6, 1)]


def test_as_of_before_history_names_the_start_date() -> None:
    """There is no price before the first bar; the error must say where history starts."""
    feed = ReplayFeed(as_of=date(2020, 12, 31))

    with pytest.raises(DataUnavailable, match="2021-01-01"):
        feed.quote("SOL")


def test_as_of_after_history_is_the_last_bar() -> None:
    """A clock beyond the data stops at the last bar rather than failing."""
    quote = ReplayFeed(as_of=date(2030, 1, 1)).quote("SOL")

    assert quote.as_of == utc(2023, 8, 29)
    assert quote.price == Decimal("21.780764")


def test_unknown_symbol_lists_the_supported_markets(feed: ReplayFeed) -> None:
    """An uncovered market gets a clear error naming what is covered, not an empty result."""
    with pytest.raises(UnknownSymbol, match="supported markets: BTC, ETH, SOL") as caught:
        feed.quote("DOGE")

    assert caught.value.symbol == "DOGE"
    assert caught.value.supported == ["BTC", "ETH", "SOL"]


def test_a_folder_serves_only_the_markets_it_has(tmp_path: Path) -> None:
    """A custom replay folder with only SOL must refuse BTC as unknown."""
    write_csv(tmp_path, HEADER + "2024-01-01,1,2,0.5,1.5,1.5,100\n")
    feed = ReplayFeed(data_dir=tmp_path)

    assert feed.symbols() == ["SOL"]
    assert feed.quote("SOL").price == Decimal("1.5")
    assert feed.quote("SOL").prev_close is None
    with pytest.raises(UnknownSymbol, match="supported markets: SOL$"):
        feed.quote("BTC")


# --- bad input files ----------------------------------------------------------------------------------------------


def test_missing_column_is_named(tmp_path: Path) -> None:
    path = write_csv(tmp_path, "Date,Open,High,Low,Close\n2024-01-01,1,2,0.5,1.5\n")

    with pytest.raises(DataUnavailable, match=r"SOL-USD\.daily\.csv: missing column\(s\) volume"):
        read_daily_csv(path, "SOL")


def test_unparsable_number_names_file_and_line(tmp_path: Path) -> None:
    """The message must point at the offending row so the file can be fixed."""
    path = write_csv(tmp_path, HEADER + "2024-01-01,1,2,0.5,1.5,1.5,100\n2024-01-02,1,2,0.5,oops,1.5,100\n")

    with pytest.raises(DataUnavailable, match=r"SOL-USD\.daily\.csv line 3: unparsable row"):
        read_daily_csv(path, "SOL")


def test_unparsable_number_line_counts_blank_lines(tmp_path: Path) -> None:
    """The reported line is the file's physical line, so an editor can jump to it even after a blank line."""
    path = write_csv(tmp_path, HEADER + "2024-01-01,1,2,0.5,1.5,1.5,100\n\n2024-01-02,1,2,0.5,oops,1.5,100\n")

    with pytest.raises(DataUnavailable, match=r"SOL-USD\.daily\.csv line 4: unparsable row"):
        read_daily_csv(path, "SOL")


@pytest.mark.parametrize(
    "second_date",
    [pytest.param("2023-12-31", id="unsorted"), pytest.param("2024-01-01", id="duplicated")],
)
def test_dates_must_increase(tmp_path: Path, second_date: str) -> None:
    """Out-of-order or repeated dates would make 'the last bar' ambiguous; they are rejected."""
    path = write_csv(tmp_path, HEADER + f"2024-01-01,1,2,0.5,1.5,1.5,100\n{second_date},1,2,0.5,1.5,1.5,100\n")

    with pytest.raises(DataUnavailable, match=rf"line 3: date {second_date} is not after the previous row"):
        read_daily_csv(path, "SOL")


@pytest.mark.parametrize("body", [pytest.param("", id="empty"), pytest.param(HEADER, id="header-only")])
def test_file_without_rows_is_unavailable(tmp_path: Path, body: str) -> None:
    """A feed over an empty file must fail loudly instead of quoting nothing."""
    write_csv(tmp_path, body)
    feed = ReplayFeed(data_dir=tmp_path)

    with pytest.raises(DataUnavailable, match=r"SOL-USD\.daily\.csv"):
        feed.quote("SOL")


@pytest.mark.parametrize("value", ["NaN", "inf", "-Infinity"])
def test_non_finite_values_are_refused_with_their_line(tmp_path: Path, value: str) -> None:
    """Decimal parses 'NaN' and 'inf'; a replayed price must never be one."""
    path = write_csv(tmp_path, HEADER + "2024-01-01,1,2,0.5,1.5,1.5,100\n" + f"2024-01-02,1,2,0.5,{value},1.5,100\n")
    with pytest.raises(DataUnavailable, match=r"SOL-USD\.daily\.csv line 3: non-finite value"):
        read_daily_csv(path, "SOL")


def test_stream_replays_in_time_order_at_the_asked_speed() -> None:
    """Speed is market seconds per real second: 864,000 plays a daily bar every 0.1 s."""
    import asyncio
    import time

    feed = ReplayFeed(as_of=date(2021, 1, 3))

    async def collect(speed: float) -> tuple[list[tuple[str, Decimal]], float]:
        started = time.perf_counter()
        got = [(q.symbol, q.price) async for q in feed.stream(["SOL", "BTC"], speed=speed)]
        return got, time.perf_counter() - started

    fast, fast_time = asyncio.run(collect(float("inf")))
    paced, paced_time = asyncio.run(collect(864_000))
    assert fast == paced and [s for s, _ in fast] == ["BTC", "SOL"] * 3
    assert fast[1] == ("SOL", Decimal("1.842084"))  # the first SOL close of the file
    assert fast_time < 0.1 and 0.18 <= paced_time < 1.0  # two waits of 0.1 s between three days
