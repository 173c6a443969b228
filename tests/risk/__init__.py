"""Tests of the risk engine (mikey/risk)."""
