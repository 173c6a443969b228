"""PNG of an analysis: candles with Bollinger Bands and moving averages, RSI below, and the signal history marked."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd


def analysis_chart(frame: pd.DataFrame, report: Any, path: str | Path, *, last: int = 180) -> Path:
    """Draw the last ``last`` bars of ``frame`` with the report's indicators and the entries/exits of the signal."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    from mikey.analysis import features, signals
    from mikey.market.chart import DOWN, UP, draw_candles, save

    feats = features.compute_features(frame)
    score = signals.score_series(feats.join(frame[["open", "high", "low", "close", "volume"]]))
    position = signals.actions(score)
    view = frame.iloc[-last:]
    f = feats.loc[view.index]
    changes = position.diff().loc[view.index]
    xs = mdates.date2num(view.index.to_pydatetime())
    fig, (ax, rsi) = plt.subplots(2, 1, figsize=(12, 7), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    try:
        draw_candles(ax, list(xs), list(view[["open", "high", "low", "close"]].itertuples(index=False, name=None)))
        ax.plot(xs, f["bb_upper"], color="#7570b3", linewidth=0.8, label="Bollinger (20, 2)")
        ax.plot(xs, f["bb_lower"], color="#7570b3", linewidth=0.8)
        for column, colour in (("ema_20", "#e6ab02"), ("sma_50", "#1b9e77")):
            if column in f:
                ax.plot(xs, f[column], color=colour, linewidth=0.9, label=column.upper().replace("_", " "))
        buys, sells = changes > 0, changes < 0
        ax.scatter(xs[buys.to_numpy()], view["low"][buys] * 0.97, marker="^", color=UP, s=50, label="BUY")
        ax.scatter(xs[sells.to_numpy()], view["high"][sells] * 1.03, marker="v", color=DOWN, s=50, label="SELL")
        ax.set_title(f"{report.symbol}: {report.signal.action} (strength {report.signal.strength:.2f}) as of "
                     f"{report.as_of:%Y-%m-%d}")
        ax.legend(loc="upper left", fontsize=8)
        ax.grid(alpha=0.3)
        rsi.plot(xs, f["rsi_14"], color="#333333", linewidth=0.9)
        rsi.axhline(70, color=DOWN, linewidth=0.6)
        rsi.axhline(30, color=UP, linewidth=0.6)
        rsi.set_ylabel("RSI(14)")
        return save(fig, rsi, path)
    finally:
        plt.close(fig)
