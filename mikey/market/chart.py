"""PNG candle charts with matplotlib (headless Agg backend), for ``mikey data show --chart``."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mikey.domain import Candle
from mikey.errors import InvalidInput

UP, DOWN = "#1a9850", "#d73027"


def draw_candles(ax: Any, xs: Sequence[float], bars: Sequence[tuple[float, float, float, float]]) -> float:
    """Draw (open, high, low, close) bars at date numbers ``xs`` on ``ax``; returns the body width used.

    The width follows the typical bar spacing, so gaps in the history do not make every candle wide.
    """
    width = statistics.median(b - a for a, b in zip(xs, xs[1:], strict=False)) * 0.7 if len(xs) > 1 else 0.5
    for x, (o, h, lo, c) in zip(xs, bars, strict=True):
        colour = UP if c >= o else DOWN
        ax.vlines(x, lo, h, color=colour, linewidth=0.8)
        ax.bar(x, abs(c - o) or (h - lo) * 0.01, width, bottom=min(o, c), color=colour, linewidth=0)
    return width


def candle_chart(candles: Sequence[Candle], title: str, path: str | Path) -> Path:
    """Draw OHLC candles (green up, red down) with a volume panel and write them to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    xs = [mdates.date2num(c.ts) for c in candles]
    fig, (ax, vol) = plt.subplots(2, 1, figsize=(11, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    try:
        width = draw_candles(ax, xs, [(float(c.open), float(c.high), float(c.low), float(c.close)) for c in candles])
        for x, c in zip(xs, candles, strict=True):
            vol.bar(x, float(c.volume), width, color=UP if c.close >= c.open else DOWN, linewidth=0)
        ax.set_title(title)
        ax.set_ylabel("price (USD)")
        vol.set_ylabel("volume")
        ax.grid(alpha=0.3)
        return save(fig, vol, path)
    finally:
        plt.close(fig)


def chart_path(path: str | Path) -> Path:
    """The PNG file a ``--chart`` option names, checked before any work: its folder must exist and it must not be a
    folder itself (``InvalidInput`` otherwise)."""
    out = Path(path)
    if out.is_dir():
        raise InvalidInput(f"--chart {out} is a folder; name a file in it, e.g. {out / 'chart.png'}")
    if not out.parent.is_dir():
        raise InvalidInput(f"--chart {out}: the folder {out.parent} does not exist")
    return out


def save(fig: Any, date_axis: Any, path: str | Path) -> Path:
    """Concise date ticks on the shared x axis, tight layout, and the PNG written to ``path``."""
    import matplotlib.dates as mdates

    locator = mdates.AutoDateLocator()
    date_axis.xaxis.set_major_locator(locator)
    date_axis.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    fig.tight_layout()
    out = Path(path)
    try:
        fig.savefig(out, dpi=110)
    except OSError as exc:  # no such folder, no permission, disk full
        raise InvalidInput(f"cannot write the chart to {out}: {exc.strerror or exc}") from exc
    return out
