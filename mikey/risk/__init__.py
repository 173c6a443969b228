"""The risk engine: margin maths, market risk, sizing, limit checks and the explainable risk score.

``assess.assess`` is the one entry point (CLI, HTTP API and agent tool all call it); the other modules are the pieces
it composes and can be used alone:

- ``liquidation``  liquidation price (isolated and cross), maintenance-margin tiers, margin ratio, distance
- ``market_risk``  returns, historical and parametric VaR/CVaR, volatility (plain and EWMA), drawdown, correlation
- ``sizing``       fixed-fraction, volatility-target and capped-Kelly sizes; the recommended maximum size
- ``checks``       ``RiskLimits`` and the named pre-trade ``RiskCheck``s
- ``score``        the 0-100 score as a sum of bounded factor points, its level, reasons and alerts

Nothing here imports pandas at module level: the hot path is numpy and plain floats.
"""
