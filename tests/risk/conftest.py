"""Bundled daily history for the risk tests: real SOL, BTC and ETH closes, loaded once per session."""

from __future__ import annotations

import pandas as pd
import pytest

from mikey.analysis.ohlcv import load_ohlcv_csv, validate_ohlcv
from mikey.market.replay import bundled_data_dir

YEAR = 365


def bundled_closes(symbol: str) -> pd.Series:
    """Every close of the bundled ``<symbol>-USD.daily.csv`` (2021-01-01 .. 2023-08-29), UTC-indexed."""
    frame = validate_ohlcv(load_ohlcv_csv(bundled_data_dir() / f"{symbol}-USD.daily.csv")).frame
    return frame["close"]


@pytest.fixture(scope="session")
def sol_all() -> pd.Series:
    return bundled_closes("SOL")


@pytest.fixture(scope="session")
def btc_all() -> pd.Series:
    return bundled_closes("BTC")


@pytest.fixture(scope="session")
def eth_all() -> pd.Series:
    return bundled_closes("ETH")


@pytest.fixture(scope="session")
def sol_year(sol_all: pd.Series) -> pd.Series:
    """The last year of SOL closes: what the API's history cache holds."""
    return sol_all.iloc[-YEAR:]


@pytest.fixture(scope="session")
def btc_year(btc_all: pd.Series) -> pd.Series:
    return btc_all.iloc[-YEAR:]
