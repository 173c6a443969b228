"""Typed domain models, defined once and shared by every layer, one module per area.

- ``market``: what the market engines collect (``Candle``, ``Quote``, ``PriceCheck``, ``NewsItem``, ``SocialPost``);
- ``analysis``: what the analysis engines compute (``IndicatorSnapshot``, ``PatternFinding``, ``SentimentScore``,
  ``Signal``, ``BacktestResult``);
- ``risk``: the risk engine's request and answer (``PositionInput``, ``RiskAssessment`` and its parts);
- ``facts``: what a turn gathered (``Facts``) and how an answer's numbers matched it (``GroundingReport``);
- ``numbers``: the numbers ``Facts`` may state, each with its display string and facts-card label (``Fact``);
- ``turn``: one chat turn (``Intent``, ``TradeProposal``, ``Answer``);
- ``insight``: the analysis pipeline's ``Insight``.

Prices are ``Decimal`` (parsed from the source's text, so a replayed close equals the published close exactly);
indicator values are ``float`` (they are computed in float64). All timestamps are timezone-aware UTC datetimes.

Import models from here (``from mikey.domain import Answer``): this is their public path, and every class says so in
its ``__module__``. Stored chat threads depend on it: LangGraph's checkpoint serializer tags each object with its
class's ``__module__`` and name, and the chat graph's allow-list (``mikey.agents.chat._STATE_TYPES``) names
``("mikey.domain", name)``. Threads written while the models lived in one ``mikey/domain.py`` carry that tag, new
ones carry the same, so old threads load, new threads read the same with older code, and a model can move between
the modules below without touching stored data.
"""

from __future__ import annotations

from mikey.domain.analysis import (
    BacktestResult,
    IndicatorSnapshot,
    PatternFinding,
    SentimentScore,
    Signal,
    SignalFactor,
)
from mikey.domain.facts import Facts, GroundingReport, Provenance, Recall
from mikey.domain.insight import Insight
from mikey.domain.market import Candle, NewsItem, PriceCheck, Quote, SocialPost
from mikey.domain.numbers import Fact
from mikey.domain.risk import (
    MAX_DAILY_RETURN,
    DailyReturn,
    PositionInput,
    RiskAlert,
    RiskAssessment,
    RiskCheck,
    RiskFactor,
)
from mikey.domain.turn import Answer, Intent, IntentKind, RiskTolerance, Timeframe, TradeProposal

__all__ = [
    "MAX_DAILY_RETURN", "Answer", "BacktestResult", "Candle", "DailyReturn", "Fact", "Facts", "GroundingReport",
    "IndicatorSnapshot", "Insight", "Intent", "IntentKind", "NewsItem", "PatternFinding", "PositionInput", "PriceCheck",
    "Provenance", "Quote", "Recall", "RiskAlert", "RiskAssessment", "RiskCheck", "RiskFactor", "RiskTolerance",
    "SentimentScore", "Signal", "SignalFactor", "SocialPost", "Timeframe", "TradeProposal",
]

for _name in __all__:  # every model says its public path, which stored threads name (see above)
    if isinstance(_public := globals()[_name], type):
        _public.__module__ = __name__
del _name, _public
