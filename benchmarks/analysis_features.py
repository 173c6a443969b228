"""The full feature set on 100,000 candles vs calling TA-Lib directly for the same indicators (issue 5).

Usage: python benchmarks/analysis_features.py [--bars 100000] [--runs 7]
Both sides run interleaved in one process, medians reported. The direct side calls TA-Lib for every indicator it
has and the same NumPy kernels (``rolling_vwap``, ``realized_volatility``) for the two it lacks, on plain arrays;
the feature side is ``compute_features`` on a DataFrame, as ``mikey analyze`` runs it. Target: ratio <= 2.0.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import pandas as pd
import talib

from mikey.analysis.features import FeatureConfig, compute_features, realized_volatility, rolling_vwap


def synthetic(bars: int, seed: int = 7) -> pd.DataFrame:
    """A geometric random walk with plausible highs, lows and volumes, one bar per minute."""
    rng = np.random.default_rng(seed)
    close = 20.0 * np.exp(np.cumsum(rng.normal(0, 0.002, bars)))
    open_ = np.concatenate([[close[0]], close[:-1]])
    spread = np.abs(rng.normal(0, 0.001, bars)) * close
    high = np.maximum(open_, close) + spread
    low = np.minimum(open_, close) - spread
    volume = rng.uniform(1e3, 1e5, bars)
    index = pd.date_range("2024-01-01", periods=bars, freq="min", tz="UTC")
    return pd.DataFrame({"open": open_, "high": high, "low": low, "close": close, "volume": volume}, index=index)


def direct(frame: pd.DataFrame, c: FeatureConfig) -> dict[str, np.ndarray]:
    o, h, lo, cl, v = (frame[k].to_numpy(dtype=float) for k in ("open", "high", "low", "close", "volume"))
    out = {"rsi": talib.RSI(cl, c.rsi_length)}
    out["macd"], out["macd_signal"], out["macd_hist"] = talib.MACD(cl, c.macd_fast, c.macd_slow, c.macd_signal)
    out["bb_upper"], out["bb_middle"], out["bb_lower"] = talib.BBANDS(cl, c.bb_length, c.bb_std, c.bb_std, 0)
    out["atr"] = talib.ATR(h, lo, cl, c.atr_length)
    out["ema"] = talib.EMA(cl, c.ema_length)
    out["sma"] = talib.SMA(cl, c.sma_length)
    out["adx"] = talib.ADX(h, lo, cl, c.adx_length)
    out["obv"] = talib.OBV(cl, v)
    out["stoch_k"], out["stoch_d"] = talib.STOCH(h, lo, cl, c.stoch_k, c.stoch_smooth_k, 0, c.stoch_d, 0)
    out["vwap"] = rolling_vwap(h, lo, cl, v, c.vwap_length)
    out["vol"] = realized_volatility(cl, c.vol_length, c.vol_annualization)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bars", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    frame, config = synthetic(args.bars), FeatureConfig()
    compute_features(frame, config), direct(frame, config)  # warm caches and imports
    ours, baseline = [], []
    for _ in range(args.runs):
        t = time.perf_counter()
        compute_features(frame, config)
        ours.append(time.perf_counter() - t)
        t = time.perf_counter()
        direct(frame, config)
        baseline.append(time.perf_counter() - t)
    a, b = statistics.median(ours), statistics.median(baseline)
    print(f"bars={args.bars} runs={args.runs} columns={len(compute_features(frame, config).columns)}")
    print(f"compute_features median {a * 1000:.1f} ms; TA-Lib direct median {b * 1000:.1f} ms; ratio {a / b:.2f} "
          f"(target <= 2.0)")


if __name__ == "__main__":
    main()
