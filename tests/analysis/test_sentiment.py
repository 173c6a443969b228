"""Sentiment scoring: known headlines get the right sign, VADER's finance failures are fixed, aggregation is exact."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

from mikey.analysis.sentiment import (
    NEUTRAL_BAND,
    LexiconScorer,
    TransformersScorer,
    aggregate,
    label_for,
    score_text,
    scorer_for,
)
from mikey.domain import NewsItem, SocialPost
from mikey.errors import ConfigError, InvalidInput

NOW = datetime(2024, 3, 14, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def scorer() -> LexiconScorer:
    return LexiconScorer()


@pytest.fixture(scope="module")
def vader() -> SentimentIntensityAnalyzer:
    return SentimentIntensityAnalyzer()


def vader_label(analyzer: SentimentIntensityAnalyzer, text: str) -> str:
    """Plain VADER's label, with VADER's own +-0.05 convention."""
    compound = analyzer.polarity_scores(text)["compound"]
    return "positive" if compound >= 0.05 else "negative" if compound <= -0.05 else "neutral"


class FakeScorer:
    """Fixed scores per text, so aggregation results can be computed by hand."""

    method = "fake"

    def __init__(self, scores: dict[str, float]) -> None:
        self.scores = scores

    def score(self, texts: Sequence[str]) -> list[float]:
        return [self.scores[text] for text in texts]


# --- single texts ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("Bitcoin surges to record high", "positive"),
        ("Solana ETF approved, SOL rallies 12%", "positive"),
        ("Exchange hacked, $100M drained; ETH plunges", "negative"),
        ("SEC sues crypto exchange", "negative"),
        ("Bitcoin trades flat ahead of Fed meeting", "neutral"),
        ("Ethereum developers schedule a call", "neutral"),
        ("Rug pull drains $5M from Solana memecoin", "negative"),
        ("Stablecoin loses its peg", "negative"),
        ("Bitcoin breaks out to new all-time high", "positive"),
        ("Bitcoin breaks below support", "negative"),
        ("Fed raises interest rates", "neutral"),
        ("Bitcoin closed at $42,000", "neutral"),
    ],
)
def test_known_headlines_have_the_right_label(scorer: LexiconScorer, text: str, label: str) -> None:
    result = score_text(text, scorer=scorer)
    assert result.label == label, (text, result.score)
    assert result.items == 1 and result.method == "vader+lm+crypto"


@pytest.mark.parametrize(
    ("text", "label", "vader_says"),
    [
        ("Bitcoin surges to record high", "positive", "neutral"),  # no word of it is in VADER's lexicon
        ("SEC sues crypto exchange", "negative", "neutral"),
        ("Bitcoin hits new high as fear fades", "positive", "negative"),  # "fear" -2.2 wins in VADER
        ("ETF approval delayed again", "negative", "positive"),  # "approval" +2.1 wins in VADER
        ("Bitcoin liquidations top $1B as price tanks", "negative", "positive"),  # only "top" +0.8 is known
        ("Short sellers crushed as ETH rips higher", "positive", "negative"),  # "crushed" -1.8
    ],
)
def test_vader_failures_on_finance_wording_are_fixed(
    scorer: LexiconScorer, vader: SentimentIntensityAnalyzer, text: str, label: str, vader_says: str
) -> None:
    assert vader_label(vader, text) == vader_says
    assert score_text(text, scorer=scorer).label == label


@pytest.mark.parametrize(
    ("negated", "plain"),
    [
        ("No crash in sight for BTC", "Crash in sight for BTC"),
        ("No rug pull here", "Rug pull here"),
        ("Bitcoin did not crash", "Bitcoin did crash"),
        ("Bitcoin is not bullish here", "Bitcoin is bullish here"),
    ],
)
def test_negation_flips_the_sign(scorer: LexiconScorer, negated: str, plain: str) -> None:
    negated_score, plain_score = scorer.score([negated, plain])
    assert abs(negated_score) >= NEUTRAL_BAND and abs(plain_score) >= NEUTRAL_BAND
    assert math.copysign(1, negated_score) == -math.copysign(1, plain_score)


def test_loughran_mcdonald_words_count_where_vader_has_none(
    scorer: LexiconScorer, vader: SentimentIntensityAnalyzer
) -> None:
    assert "impairment" not in vader.lexicon and "insolvency" not in vader.lexicon
    assert vader_label(vader, "Miner reports impairment") == "neutral"
    assert score_text("Miner reports impairment", scorer=scorer).label == "negative"
    assert score_text("Lender faces insolvency", scorer=scorer).label == "negative"


def test_scores_stay_in_range_and_blank_text_is_refused(scorer: LexiconScorer) -> None:
    loud = "CRASH!!! HACK!!! RUG PULL!!! DUMP!!! PLUNGE!!! LIQUIDATIONS!!! " * 5
    assert -1 <= scorer.score([loud])[0] < -0.9
    with pytest.raises(InvalidInput):
        score_text("   ", scorer=scorer)


def test_neutral_band() -> None:
    assert label_for(NEUTRAL_BAND) == "positive"
    assert label_for(-NEUTRAL_BAND) == "negative"
    assert label_for(NEUTRAL_BAND - 1e-9) == "neutral"


# --- aggregation ----------------------------------------------------------------------------------------------------

def test_older_items_weigh_less_by_half_life() -> None:
    fake = FakeScorer({"good": 0.8, "bad": -0.4, "old": -1.0})
    items = [("good", NOW, "news"), ("bad", NOW - timedelta(hours=24), "news"),
             ("old", NOW - timedelta(hours=72), "news")]
    result = aggregate(items, symbol="BTC", now=NOW, half_life_hours=24, scorer=fake)
    expected = (0.8 * 1 + -0.4 * 0.5 + -1.0 * 0.125) / (1 + 0.5 + 0.125)
    assert result.score == pytest.approx(expected, abs=1e-12)
    assert (result.items, result.symbol, result.as_of, result.method) == (3, "BTC", NOW, "fake")
    assert result.label == "positive"  # 0.2923...


def test_source_weights_multiply_decay_and_zero_drops_a_source() -> None:
    fake = FakeScorer({"a": 0.6, "b": -0.6, "c": 1.0})
    items = [("a", NOW, "coindesk"), ("b", NOW - timedelta(hours=12), "x"), ("c", NOW, "spam")]
    result = aggregate(items, symbol="SOL", now=NOW, half_life_hours=12, scorer=fake,
                       source_weights={"coindesk": 2.0, "x": 1.0, "spam": 0.0})
    assert result.score == pytest.approx((0.6 * 2.0 - 0.6 * 0.5) / (2.0 + 0.5), abs=1e-12)
    assert result.items == 2


def test_news_and_posts_are_filtered_by_symbol_and_clock() -> None:
    fake = FakeScorer({"SOL rallies. Big day": 0.5, "sol pumps": 0.9, "BTC dumps": -0.9, "future": -1.0})
    news = NewsItem(id="1", source="wire", title="SOL rallies", summary="Big day", url="u", published_at=NOW,
                    symbols=["SOL"])
    post = SocialPost(id="2", platform="x", author="a", text="sol pumps", created_at=NOW - timedelta(hours=6),
                      symbols=["SOL"])
    other = NewsItem(id="3", source="wire", title="BTC dumps", url="u", published_at=NOW, symbols=["BTC"])
    untagged = NewsItem(id="4", source="wire", title="BTC dumps", url="u", published_at=NOW)
    future = ("future", NOW + timedelta(minutes=1), "wire")
    result = aggregate([news, post, other, untagged, future], symbol="SOL", now=NOW, half_life_hours=6,
                       source_weights={"x": 0.5}, scorer=fake)
    assert result.items == 2
    assert result.score == pytest.approx((0.5 * 1.0 + 0.9 * 0.25) / 1.25, abs=1e-12)


def test_no_items_is_a_neutral_score_resting_on_nothing() -> None:
    result = aggregate([], symbol="ETH", now=NOW, scorer=FakeScorer({}))
    assert (result.score, result.label, result.items, result.as_of) == (0.0, "neutral", 0, NOW)


def test_aggregate_refuses_bad_arguments() -> None:
    fake = FakeScorer({"a": 0.1})
    with pytest.raises(InvalidInput):
        aggregate([], symbol="ETH", now=datetime(2024, 1, 1), scorer=fake)
    with pytest.raises(InvalidInput):
        aggregate([], symbol="ETH", now=NOW, half_life_hours=0, scorer=fake)
    with pytest.raises(InvalidInput):
        aggregate([], symbol="ETH", now=NOW, source_weights={"x": -1.0}, scorer=fake)
    with pytest.raises(InvalidInput):
        aggregate([("a", datetime(2024, 1, 1), "x")], symbol="ETH", now=NOW, scorer=fake)


def test_aggregate_with_the_default_lexicon_scorer() -> None:
    items = [("Solana ETF approved, SOL rallies 12%", NOW - timedelta(hours=1), "wire"),
             ("SOL trades flat", NOW - timedelta(hours=2), "wire")]
    result = aggregate(items, symbol="SOL", now=NOW)
    assert result.label == "positive" and result.items == 2 and result.method == "vader+lm+crypto"


# --- scorer selection and the local classifier ----------------------------------------------------------------------

def test_no_model_path_selects_the_lexicon_scorer() -> None:
    assert isinstance(scorer_for(None), LexiconScorer)


@pytest.mark.parametrize("path", ["ProsusAI/finbert", "/nonexistent/finbert"])
def test_a_path_that_is_not_a_local_folder_is_a_config_error(path: str) -> None:
    with pytest.raises(ConfigError, match="not a folder"):
        scorer_for(Path(path))


def _tiny_classifier(folder: Path, labels: dict[int, str], bias: list[float]) -> Path:
    """A 1-layer BERT saved to ``folder`` whose classifier ignores its input: softmax(bias) for every text."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

    folder.mkdir()
    (folder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "bitcoin", "crash"]))
    config = BertConfig(vocab_size=7, hidden_size=8, num_hidden_layers=1, num_attention_heads=1, intermediate_size=16,
                        max_position_embeddings=32, num_labels=len(labels), id2label=labels,
                        label2id={name: i for i, name in labels.items()})
    torch.manual_seed(0)
    model = BertForSequenceClassification(config)
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor(bias))
    model.save_pretrained(folder)
    BertTokenizer(vocab_file=str(folder / "vocab.txt")).save_pretrained(folder)
    return folder


def test_local_classifier_scores_p_positive_minus_p_negative(tmp_path: Path) -> None:
    path = _tiny_classifier(tmp_path / "clf", {0: "negative", 1: "neutral", 2: "positive"}, [0.0, 0.0, math.log(3)])
    chosen = scorer_for(path)
    assert isinstance(chosen, TransformersScorer) and chosen.method == f"transformers:{path}"
    # softmax([0, 0, ln 3]) = [1/5, 1/5, 3/5]
    assert chosen.score(["bitcoin", "crash crash unknown words"]) == pytest.approx([0.4, 0.4], abs=1e-6)
    result = score_text("bitcoin", scorer=chosen)
    assert result.label == "positive" and result.method.startswith("transformers:")


def test_local_classifier_without_polarity_labels_is_a_config_error(tmp_path: Path) -> None:
    path = _tiny_classifier(tmp_path / "clf", {0: "LABEL_0", 1: "LABEL_1"}, [0.0, 0.0])
    with pytest.raises(ConfigError, match="need positive and negative"):
        TransformersScorer(path)
