"""Analysis engine: indicators now; patterns, sentiment, signals and backtests build on it."""
