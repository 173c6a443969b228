"""``mikey analyze``: the whole analysis as JSON, from the feed or a CSV, never a NaN, with clear errors."""

from __future__ import annotations

import json
import math

import pytest
import talib

from mikey.analysis.ohlcv import frame_from_candles
from mikey.analysis.report import analyze
from mikey.market.replay import ReplayFeed
from tests.conftest import SHARED_DATA, run_mikey

KEYS = {"symbol", "as_of", "price", "indicators", "patterns", "sentiment", "signal", "backtest"}


def no_nan(value: object) -> bool:
    """True when no float anywhere in a JSON-like value is NaN or infinite."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(no_nan(v) for v in value.values())
    if isinstance(value, list):
        return all(no_nan(v) for v in value)
    return True


def test_report_on_bundled_sol_matches_talib_and_has_no_nan() -> None:
    frame = frame_from_candles(ReplayFeed().candles("SOL"))
    report = analyze(frame, symbol="SOL", source="replay")
    data = json.loads(report.model_dump_json())
    assert KEYS <= data.keys() and no_nan(data)
    close = frame["close"].to_numpy()
    assert report.indicators["rsi_14"] == pytest.approx(talib.RSI(close, 14)[-1], abs=1e-6)
    assert report.indicators["macd"] == pytest.approx(talib.MACD(close, 12, 26, 9)[0][-1], abs=1e-6)
    assert report.price == pytest.approx(21.780764)
    assert report.signal.action in {"BUY", "SELL", "HOLD"} and 0 <= report.signal.strength <= 1
    assert report.backtest.buy_and_hold_return == pytest.approx(close[-1] / close[0] - 1)
    assert report.sentiment.items == 0 and report.sentiment.label == "neutral"


def test_as_of_sees_nothing_after_it() -> None:
    from datetime import UTC, datetime

    frame = frame_from_candles(ReplayFeed().candles("BTC"))
    cut = datetime(2022, 6, 1, tzinfo=UTC)
    report = analyze(frame, symbol="BTC", source="replay", as_of=cut)
    assert report.as_of == cut and report.bars == int((frame.index <= cut).sum())
    assert report.price == pytest.approx(float(frame.loc[cut, "close"]))
    later = frame.copy()
    later.loc[later.index > cut, ["open", "high", "low", "close"]] *= 3  # a different future
    assert analyze(later, symbol="BTC", source="replay", as_of=cut) == report


@pytest.mark.skipif(not (SHARED_DATA / "SOL-USD.daily.csv").is_file(), reason="shared data absent")
def test_cli_json_from_a_yahoo_csv(isolated_env, tmp_path) -> None:
    chart = tmp_path / "sol.png"
    done = run_mikey("analyze", "sol", "--history", str(SHARED_DATA / "SOL-USD.daily.csv"), "--json",
                     "--chart", str(chart), env={"MIKEY_HOME": str(isolated_env)})
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert KEYS <= data.keys() and no_nan(data)
    assert data["price"] == pytest.approx(21.780764) and data["as_of"].startswith("2023-08-29")
    assert {"rsi_14", "macd", "macd_signal", "macd_hist", "bb_upper", "bb_middle", "bb_lower", "atr_14"} <= set(
        data["indicators"])
    assert chart.read_bytes()[:4] == b"\x89PNG"


def test_cli_table_output_names_signal_and_backtest(isolated_env) -> None:
    done = run_mikey("analyze", "ETH", "--as-of", "2023-01-31", env={"MIKEY_HOME": str(isolated_env)})
    assert done.returncode == 0, done.stderr
    assert "ETH" in done.stdout and "as of 2023-01-31" in done.stdout
    assert "signal:" in done.stdout and "buy-and-hold" in done.stdout


@pytest.mark.parametrize(("rows", "message"), [
    (lambda r: r[:20], "error: analysis needs at least 51 bars; got 20"),
    (lambda r: r[:60] + [r[59]] + r[60:], "error: duplicated date(s) 2021-03-01"),
    (lambda r: r[:80] + [r[80].replace(r[80].split(",")[4], "nan")] + r[81:],
     "error: close is NaN or infinite in row 81 (2021-03-22)"),
], ids=["too-few-bars", "duplicated-date", "nan-close"])
def test_cli_bad_history_is_one_clear_line(isolated_env, tmp_path, rows, message) -> None:
    from mikey.market.replay import bundled_data_dir

    # The bundled copy of the Yahoo export (byte for byte ../shared's), so the test runs without ../shared too.
    lines = (bundled_data_dir() / "SOL-USD.daily.csv").read_text().splitlines()
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join([lines[0], *rows(lines[1:])]) + "\n")
    done = run_mikey("analyze", "SOL", "--history", str(bad), "--json", env={"MIKEY_HOME": str(isolated_env)})
    assert done.returncode == 1 and done.stderr.startswith(message), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


@pytest.mark.parametrize("history", [False, True], ids=["feed", "csv"])
def test_cli_as_of_before_any_bar_is_one_clear_line(isolated_env, history) -> None:
    from mikey.market.replay import bundled_data_dir

    csv = bundled_data_dir() / "SOL-USD.daily.csv"
    args = ["--history", str(csv)] if history else []
    done = run_mikey("analyze", "SOL", "--as-of", "1999-01-01", *args, env={"MIKEY_HOME": str(isolated_env)})
    source = "csv:SOL-USD.daily.csv" if history else "replay"
    assert done.returncode == 1, done.stderr
    assert done.stderr == f"error: no SOL bars on or before 1999-01-01 in {source}: its bars start 2021-01-01\n"


def test_cli_chart_into_a_missing_folder_is_one_clear_line(isolated_env, tmp_path) -> None:
    missing = tmp_path / "nonexistent" / "x.png"
    done = run_mikey("analyze", "SOL", "--chart", str(missing), env={"MIKEY_HOME": str(isolated_env)})
    assert done.returncode == 1 and done.stdout == "", done.stderr
    assert done.stderr == f"error: --chart {missing}: the folder {missing.parent} does not exist\n"


def test_cli_history_of_any_symbol(isolated_env, tmp_path) -> None:
    """A CSV is the user's own data: SPY (or any name) is analysed on it, the same way as a covered market."""
    from mikey.market.replay import bundled_data_dir

    csv = bundled_data_dir() / "SOL-USD.daily.csv"
    env = {"MIKEY_HOME": str(isolated_env)}
    spy = run_mikey("analyze", "spy", "--history", str(csv), "--json", env=env)
    assert spy.returncode == 0, spy.stderr
    sol = run_mikey("analyze", "SOL", "--history", str(csv), "--json", env=env)
    as_spy = json.loads(spy.stdout)
    assert as_spy["symbol"] == "SPY" and as_spy["signal"]["symbol"] == "SPY" and no_nan(as_spy)
    assert as_spy == json.loads(sol.stdout.replace('"SOL"', '"SPY"'))
    feed = run_mikey("analyze", "SPY", env=env)  # the feed covers BTC, ETH and SOL only
    assert feed.returncode == 1 and feed.stderr.startswith("error: unknown market 'SPY'")


def test_agent_tool_gives_the_same_report_as_the_engine() -> None:
    from mikey.tools.analysis import analyze_market

    feed = ReplayFeed()
    via_tool = analyze_market(feed, "ETH")
    direct = analyze(frame_from_candles(feed.candles("ETH")), symbol="ETH", source="replay")
    assert via_tool == direct
