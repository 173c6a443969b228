"""Tests of order execution (mikey/execution)."""
