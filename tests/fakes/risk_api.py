"""What the risk tests post to ``/v1/risk/assess`` (and ``mikey risk assess`` reads), the fields its contract
promises, and a history cache seeded from a CSV exactly as ``mikey risk assess --history`` reads it."""

from __future__ import annotations

from pathlib import Path

from mikey.analysis.ohlcv import load_ohlcv_csv
from mikey.api.app import HistoryCache
from mikey.market.replay import ReplayFeed, bundled_data_dir
from mikey.tools.risk import history_from_frame

CONTRACT_FIELDS = (
    "liquidation_price", "distance_to_liquidation_pct", "margin_ratio", "var_95", "cvar_95", "var_99", "cvar_99",
    "volatility_annualized", "max_drawdown", "risk_score", "risk_level", "recommended_max_size", "checks", "reasons",
    "as_of",
)
POSITION = {"market": "SOL", "side": "long", "size": 10, "collateral": 100}
URL = "/v1/risk/assess"


def history_csv(tmp_path: Path, rows: int = 400) -> Path:
    """The first ``rows`` bars of the bundled SOL history: a window the feed (which ends later) does not give."""
    lines = (bundled_data_dir() / "SOL-USD.daily.csv").read_text().splitlines()
    path = tmp_path / "sol-early.csv"
    path.write_text("\n".join(lines[: rows + 1]) + "\n")
    return path


def csv_cache(path: Path) -> HistoryCache:
    """A history cache holding only the CSV at ``path``, as SOL's history."""
    cache = HistoryCache(ReplayFeed())
    cache.put(history_from_frame(load_ohlcv_csv(path), "SOL", source=f"csv:{path.name}"))
    return cache
