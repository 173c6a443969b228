"""Signals: each factor pushes the right way, the score is the weighted sum of the listed factors, the strength moves
with the evidence, and the vectorised score equals the per-bar signal on every bar (which also proves no factor reads
a later bar, since ``signal_at`` sees only the bars up to its own)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from mikey.analysis import signals
from mikey.domain import PatternFinding, SentimentScore
from mikey.errors import DataUnavailable, InvalidInput
from tests.fakes.talib_reference import talib_features

NEUTRAL = {
    "close": 100.0, "bb_upper": 110.0, "bb_lower": 90.0, "rsi_14": 50.0, "macd_hist": 0.0, "atr_14": 2.0,
    "ema_20": 100.0, "sma_50": 100.0, "adx_14": 25.0, "stoch_k": 50.0, "stoch_d": 50.0,
}
START = datetime(2023, 1, 1, tzinfo=UTC)


def frame(rows: int = 3, **columns: float | list[float]) -> pd.DataFrame:
    """A constructed features frame: neutral everywhere (score 0) except the columns given."""
    data = {name: np.broadcast_to(np.asarray(columns.get(name, value), float), rows) for name, value in NEUTRAL.items()}
    index = pd.date_range(START, periods=rows, freq="D", name="ts")
    return pd.DataFrame(data, index=index)


def contribution(features: pd.DataFrame, name: str, i: int = -1) -> float:
    sig = signals.signal_at(features, i, symbol="SOL", weights={name: 1.0})
    (only,) = sig.factors
    assert only.name == name
    return only.contribution


def test_neutral_features_hold_with_zero_strength() -> None:
    sig = signals.signal_at(frame(), symbol="SOL")
    assert sig.action == "HOLD" and sig.strength == 0.0
    assert [f.name for f in sig.factors] == ["rsi", "macd", "bollinger", "trend", "stochastic"]
    assert all(f.contribution == 0.0 for f in sig.factors)


@pytest.mark.parametrize(
    ("name", "columns", "sign"),
    [
        ("rsi", {"rsi_14": 20.0}, 1),
        ("rsi", {"rsi_14": 85.0}, -1),
        ("rsi", {"rsi_14": 55.0}, 0),
        ("macd", {"macd_hist": [0.0, 0.5, 1.0]}, 1),
        ("macd", {"macd_hist": [0.0, -0.5, -1.0]}, -1),
        ("bollinger", {"close": 88.0}, 1),
        ("bollinger", {"close": 112.0}, -1),
        ("bollinger", {"close": 100.0}, 0),
        ("trend", {"ema_20": 104.0, "adx_14": 35.0}, 1),
        ("trend", {"ema_20": 96.0, "adx_14": 35.0}, -1),
        ("trend", {"ema_20": 104.0, "adx_14": 12.0}, 0),
        ("stochastic", {"stoch_k": [50.0, 15.0, 25.0], "stoch_d": [50.0, 20.0, 20.0]}, 1),
        ("stochastic", {"stoch_k": [50.0, 85.0, 75.0], "stoch_d": [50.0, 80.0, 80.0]}, -1),
        ("stochastic", {"stoch_k": [50.0, 30.0, 40.0], "stoch_d": [50.0, 20.0, 20.0]}, 0),
    ],
)
def test_factor_pushes_the_right_way(name: str, columns: dict, sign: int) -> None:
    c = contribution(frame(**columns), name)
    assert np.sign(c) == sign
    assert -1.0 <= c <= 1.0


def test_contributions_grow_with_distance() -> None:
    """Scaled by distance: deeper oversold, wider trend gap, a cross deeper in the zone push harder."""
    assert contribution(frame(rsi_14=10.0), "rsi") > contribution(frame(rsi_14=25.0), "rsi") > 0
    assert contribution(frame(rsi_14=95.0), "rsi") < contribution(frame(rsi_14=75.0), "rsi") < 0
    assert contribution(frame(rsi_14=0.0), "rsi") == 1.0
    assert contribution(frame(close=80.0), "bollinger") == 1.0 > contribution(frame(close=95.0), "bollinger") > 0
    strong = frame(ema_20=104.0, adx_14=40.0)
    assert contribution(strong, "trend") > contribution(frame(ema_20=104.0, adx_14=25.0), "trend") > 0
    assert contribution(frame(ema_20=200.0, adx_14=90.0), "trend") == pytest.approx(1.0)
    deep = frame(stoch_k=[50.0, 15.0, 21.0], stoch_d=[50.0, 20.0, 20.0])
    shallow = frame(stoch_k=[50.0, 55.0, 61.0], stoch_d=[50.0, 60.0, 60.0])
    assert contribution(deep, "stochastic") > contribution(shallow, "stochastic") == 0.5


def test_oversold_features_buy_and_overbought_sell() -> None:
    oversold = frame(rsi_14=18.0, close=87.0, macd_hist=[-1.0, -0.8, -0.5], stoch_k=[50, 10, 18], stoch_d=[50, 14, 14])
    overbought = frame(rsi_14=82.0, close=113.0, macd_hist=[1.0, 0.8, 0.5], stoch_k=[50, 90, 82], stoch_d=[50, 86, 86])
    buy, sell = signals.signal_at(oversold, symbol="SOL"), signals.signal_at(overbought, symbol="SOL")
    assert buy.action == "BUY" and sell.action == "SELL"
    assert buy.strength == pytest.approx(sell.strength) and 0 < buy.strength <= 1
    assert "oversold" in next(f.reason for f in buy.factors if f.name == "rsi")
    assert next(f.value for f in buy.factors if f.name == "rsi") == 18.0


def finding(day: int, direction: str, kind: str = "candlestick", strength: float = 0.9) -> PatternFinding:
    end = START + timedelta(days=day)
    return PatternFinding(kind=kind, name="CDLENGULFING" if kind == "candlestick" else f"{direction} RSI divergence",
                          direction=direction, strength=strength, start=end - timedelta(days=1), end=end, bars=2)


def test_patterns_push_from_their_last_bar_and_fade() -> None:
    features = frame(rows=8)
    found = [finding(2, "bullish"), finding(6, "bearish", kind="divergence", strength=0.6),
             finding(3, "bearish", kind="trend")]  # trend findings are the trend factor's business
    score = signals.score_series(features, {"patterns": 1.0}, patterns=found)
    assert score.tolist() == pytest.approx([0, 0, 0.9, 0.6, 0.3, 0, -0.6, -0.4])
    sig = signals.signal_at(features, 3, symbol="SOL", weights={"patterns": 1.0}, patterns=found)
    assert sig.factors[0].reason == "bullish CDLENGULFING (strength 0.90, 1 bars ago)"
    assert signals.signal_at(features, 1, symbol="SOL", weights={"patterns": 1.0}, patterns=found).strength == 0.0


def test_sentiment_counts_from_its_date_and_undated_means_now() -> None:
    features = frame(rows=5)
    dated = [SentimentScore(symbol="SOL", score=0.8, label="positive", items=12, method="vader+lm+crypto",
                            as_of=START + timedelta(days=1, hours=6)),
             SentimentScore(symbol="SOL", score=-0.4, label="negative", items=3, method="vader+lm+crypto",
                            as_of=START + timedelta(days=3))]
    score = signals.score_series(features, {"sentiment": 1.0}, sentiment=dated)
    assert score.tolist() == pytest.approx([0, 0, 0.8, -0.4, -0.4])  # 06:00 on day 1 is first usable at bar 2
    early = signals.signal_at(features, 1, symbol="SOL", weights={"sentiment": 1.0}, sentiment=dated)
    assert early.factors[0].value is None
    assert early.factors[0].reason == "sentiment: not available at this bar (no sentiment score dated at or before it)"
    now = SentimentScore(score=0.5, label="positive", items=4, method="vader+lm+crypto")
    assert signals.score_series(features, {"sentiment": 1.0}, sentiment=now).tolist() == [0, 0, 0, 0, 0.5]
    last = signals.signal_at(features, symbol="SOL", weights={"sentiment": 1.0}, sentiment=now)
    assert last.factors[0].contribution == 0.5 and "now" in last.factors[0].reason


def test_patterns_and_sentiment_join_the_weights_only_when_given() -> None:
    assert set(signals.resolve_weights()) == {"rsi", "macd", "bollinger", "trend", "stochastic"}
    full = signals.resolve_weights(patterns=True, sentiment=True)
    assert list(full) == list(signals.FACTORS) and sum(full.values()) == pytest.approx(1.0)
    assert full["rsi"] == pytest.approx(signals.DEFAULT_WEIGHTS["rsi"] / sum(signals.DEFAULT_WEIGHTS.values()))


@pytest.fixture(scope="module")
def sol() -> pd.DataFrame:
    return talib_features("SOL")


def sol_extras(features: pd.DataFrame) -> tuple[list[PatternFinding], list[SentimentScore]]:
    """Dated findings and sentiment scores spread over the SOL history, some between bars."""
    index = features.index
    found = [PatternFinding(kind="candlestick", name="CDLHAMMER", direction="bullish" if k % 2 else "bearish",
                            strength=0.3 + 0.05 * (k % 10), start=index[i - 1], end=index[i], bars=2)
             for k, i in enumerate(range(60, len(index), 37))]
    moods = [SentimentScore(symbol="SOL", score=float(np.sin(k)), label="neutral", items=k, method="test",
                            as_of=index[i].to_pydatetime() + timedelta(hours=5))
             for k, i in enumerate(range(40, len(index), 23))]
    return found, moods


def test_vectorised_score_equals_per_bar_signal_on_every_bar(sol: pd.DataFrame) -> None:
    """Same maths both ways, on every bar; and since signal_at sees only bars <= i, no factor looks ahead."""
    found, moods = sol_extras(sol)
    weights = signals.resolve_weights(patterns=True, sentiment=True)
    score = signals.score_series(sol, patterns=found, sentiment=moods)
    threshold, used = 0.1, set()
    for i in range(len(sol)):
        sig = signals.signal_at(sol, i, symbol="SOL", threshold=threshold, patterns=found, sentiment=moods)
        total = sum(weights[f.name] * f.contribution for f in sig.factors)  # the factors sum to the score
        assert [f.name for f in sig.factors] == list(weights)
        assert total == pytest.approx(score.iloc[i], abs=1e-12)
        assert sig.strength == pytest.approx(abs(score.iloc[i]), abs=1e-12)
        expected = "BUY" if score.iloc[i] >= threshold else "SELL" if score.iloc[i] <= -threshold else "HOLD"
        assert sig.action == expected
        assert sig.as_of == sol.index[i]
        used.update(f.name for f in sig.factors if f.contribution != 0)
    assert used == set(weights)  # every factor, patterns and sentiment too, pushed on some bar


def test_strength_varies_across_bars(sol: pd.DataFrame) -> None:
    score = signals.score_series(sol)
    strengths = score.abs().iloc[60:]
    assert strengths.nunique() > 0.9 * len(strengths)
    assert strengths.std() > 0.03 and 0 <= strengths.min() < 0.01 and strengths.max() > 0.2
    acts = signals.actions(score)
    assert set(acts.unique()) == {0, 1}
    assert score.ge(signals.DEFAULT_THRESHOLD).any() and score.le(-signals.DEFAULT_THRESHOLD).any()


def test_warm_up_bars_list_every_factor_as_not_available(sol: pd.DataFrame) -> None:
    sig = signals.signal_at(sol, 0, symbol="SOL")
    assert sig.action == "HOLD" and sig.strength == 0.0
    assert all(f.contribution == 0.0 and f.value is None and "not available" in f.reason for f in sig.factors)
    assert "NaN" not in sig.model_dump_json()


def test_changing_later_bars_does_not_change_earlier_scores(sol: pd.DataFrame) -> None:
    changed = sol.copy()
    changed.iloc[500:] = sol.iloc[500:].iloc[::-1].to_numpy()  # the later bars, in reverse order
    before, after = signals.score_series(sol), signals.score_series(changed)
    np.testing.assert_array_equal(after[:500], before[:500])
    assert (after[500:] != before[500:]).mean() > 0.9


def test_actions_long_flat_by_default_and_hold_keeps_the_position() -> None:
    score = pd.Series([0.0, 0.3, 0.1, -0.05, -0.3, 0.0, 0.2], index=pd.date_range(START, periods=7, freq="D"))
    assert signals.actions(score, 0.2).tolist() == [0, 1, 1, 1, 0, 0, 1]
    assert signals.actions(score, 0.2, allow_short=True).tolist() == [0, 1, 1, 1, -1, -1, 1]
    assert signals.actions(score, 0.35).tolist() == [0] * 7


def test_registry_rejects_a_second_factor_of_the_same_name() -> None:
    with pytest.raises(ValueError, match="registered twice"):
        signals.factor("rsi", weight=0.1)(signals.rsi_factor)
    assert signals.FACTORS["rsi"].read is signals.rsi_factor


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: signals.signal_at(frame().drop(columns="adx_14"), symbol="SOL"), InvalidInput, "adx_14"),
        (lambda: signals.score_series(frame(), {"moon": 1.0}), InvalidInput, "unknown signal factor"),
        (lambda: signals.score_series(frame(), {"rsi": -1.0}), InvalidInput, ">= 0"),
        (lambda: signals.score_series(frame(), {"rsi": 0.0}), InvalidInput, "positive weight"),
        (lambda: signals.score_series(frame(), {"patterns": 1.0}), InvalidInput, "positive weight"),
        (lambda: signals.signal_at(frame(), 3, symbol="SOL"), InvalidInput, "outside"),
        (lambda: signals.signal_at(frame(), symbol="SOL", threshold=0.0), InvalidInput, "threshold"),
        (lambda: signals.score_series(frame().reset_index(drop=True)), InvalidInput, "DatetimeIndex"),
        (lambda: signals.score_series(frame().iloc[::-1]), InvalidInput, "time order"),
        (lambda: signals.score_series(frame().iloc[:0]), DataUnavailable, "no bars"),
    ],
)
def test_bad_input_is_a_clear_error(call, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        call()


def test_naive_index_is_read_as_utc() -> None:
    sig = signals.signal_at(frame().tz_localize(None), symbol="SOL")
    assert sig.as_of == START + timedelta(days=2)
