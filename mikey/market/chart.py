"""PNG candle charts with matplotlib (headless Agg backend), for ``mikey data show --chart``."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path

from mikey.domain import Candle


def candle_chart(candles: Sequence[Candle], title: str, path: str | Path) -> Path:
    """Draw OHLC candles (green up, red down) with a volume panel and write them to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    xs = [mdates.date2num(c.ts) for c in candles]
    # The typical bar spacing (gaps in stored history must not make every candle wide).
    width = statistics.median(b - a for a, b in zip(xs, xs[1:], strict=False)) * 0.7 if len(xs) > 1 else 0.5
    fig, (ax, vol) = plt.subplots(2, 1, figsize=(11, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    try:
        for x, c in zip(xs, candles, strict=True):
            o, h, lo, cl = float(c.open), float(c.high), float(c.low), float(c.close)
            colour = "#1a9850" if cl >= o else "#d73027"
            ax.vlines(x, lo, h, color=colour, linewidth=0.8)
            ax.bar(x, abs(cl - o) or (h - lo) * 0.01, width, bottom=min(o, cl), color=colour, linewidth=0)
            vol.bar(x, float(c.volume), width, color=colour, linewidth=0)
        ax.set_title(title)
        ax.set_ylabel("price (USD)")
        vol.set_ylabel("volume")
        locator = mdates.AutoDateLocator()
        vol.xaxis.set_major_locator(locator)
        vol.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
        ax.grid(alpha=0.3)
        fig.tight_layout()
        out = Path(path)
        fig.savefig(out, dpi=110)
        return out
    finally:
        plt.close(fig)
