"""Confidence intervals and paired tests for eval runs: is a difference between two runs more than noise?

- ``wilson_interval``: the Wilson score interval for a pass rate;
- ``mean_interval``: a percentile bootstrap interval for a mean score;
- ``mcnemar``: McNemar's exact test on paired pass/fail, with the Wald interval of the paired difference;
- ``paired_bootstrap``: a percentile bootstrap of the mean paired difference of scores;
- ``cell_summary``: one row per (suite, cell, scorer) of a run;
- ``compare_runs``: two runs paired by ``SampleRecord.sample_id``, one ``Comparison`` per (suite, cell, scorer).

Everything is pure and deterministic given ``seed``; bad input raises ``InvalidInput`` rather than returning a guess.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy import stats as sps

from mikey.errors import InvalidInput
from mikey.evals.records import Cell, SampleRecord, Score

SampleId = tuple[str, str, str, int]  # suite, case, cell label, epoch: ``SampleRecord.sample_id``
ScoreKey = tuple[str, str, str]  # suite, cell label, scorer

_CHUNK = 1_000_000  # indices drawn per bootstrap batch: bounds memory at ~8 MB whatever the sample size


# --- results --------------------------------------------------------------------------------------------------------


class McNemarResult(BaseModel):
    """McNemar's test on the same samples passed or failed in runs A and B."""

    model_config = ConfigDict(frozen=True)

    n: int = Field(description="Paired samples.")
    b01: int = Field(description="Discordant pairs where A failed and B passed.")
    b10: int = Field(description="Discordant pairs where A passed and B failed.")
    pass_rate_a: float
    pass_rate_b: float
    difference: float = Field(description="Pass rate of B minus pass rate of A: (b01 - b10) / n.")
    ci_low: float = Field(description="Wald interval of the paired difference (see ``mcnemar``).")
    ci_high: float
    confidence: float
    p_value: float = Field(description="Exact two-sided binomial p-value on the discordant pairs (p = 0.5).")
    chi2: float = Field(description="Secondary: McNemar's chi-square with Edwards' continuity correction.")
    chi2_p_value: float = Field(description="Its p-value on 1 degree of freedom.")
    significant: bool = Field(description="Exact p-value below 1 - confidence.")


class PairedResult(BaseModel):
    """A paired bootstrap of the mean difference B - A of per-sample scores."""

    model_config = ConfigDict(frozen=True)

    n: int = Field(description="Paired samples.")
    mean_a: float
    mean_b: float
    difference: float = Field(description="Mean of B - A over the pairs.")
    ci_low: float = Field(description="Percentile bootstrap interval of the mean difference.")
    ci_high: float
    confidence: float
    p_value: float = Field(description="Twice the share of resampled differences across zero, capped at 1.")
    significant: bool = Field(description="The interval excludes 0.")


class CellSummary(BaseModel):
    """One scorer's results in one cell of one suite."""

    model_config = ConfigDict(frozen=True)

    suite: str
    cell: Cell
    scorer: str
    n: int = Field(description="Samples the scorer judged (skipped ones excluded).")
    skipped: int = Field(description="Samples the scorer could not judge.")
    errors: int = Field(description="Samples whose target raised (``SampleRecord.error``).")
    mean: float | None = Field(description="Mean score; None when nothing was judged.")
    mean_low: float | None = Field(description="Percentile bootstrap interval of the mean score.")
    mean_high: float | None
    pass_n: int = Field(description="Judged samples with a pass/fail verdict (0 when the scorer gives none).")
    passed: int
    pass_rate: float | None = Field(description="passed / pass_n; None when the scorer gives no verdicts.")
    pass_low: float | None = Field(description="Wilson interval of the pass rate.")
    pass_high: float | None
    confidence: float
    cost_usd: float = Field(description="Total over the samples the scorer saw, skipped included.")
    cached: int = Field(description="Samples answered from the eval cache.")
    latency_mean_s: float | None = Field(description="Over samples not answered from the cache; None if all were.")
    latency_median_s: float | None
    tokens_in: int
    tokens_out: int


class Comparison(BaseModel):
    """Run A against run B for one (suite, cell, scorer), on the samples both runs judged."""

    model_config = ConfigDict(frozen=True)

    suite: str
    cell: Cell
    scorer: str
    n_pairs: int = Field(description="Samples judged (not skipped) in both runs.")
    unpaired_a: int = Field(description="Judged in A only: B lacks the sample or the scorer, or skipped it.")
    unpaired_b: int = Field(description="Judged in B only.")
    mcnemar: McNemarResult | None = Field(description="On pairs with pass/fail in both runs; None if there are none.")
    bootstrap: PairedResult | None = Field(description="On the pairs' scores; None below 2 pairs.")
    significant: bool = Field(description="McNemar's verdict when there is one, else the bootstrap's, else False.")
    summary: str = Field(description="One sentence for people.")


# --- intervals and tests ---------------------------------------------------------------------------------------------


def _check_confidence(confidence: float) -> None:
    if not 0 < confidence < 1:
        raise InvalidInput(f"confidence must be between 0 and 1 (exclusive), not {confidence}")


def _z(confidence: float) -> float:
    return float(sps.norm.ppf(0.5 + confidence / 2))


def _floats(values: Sequence[float], what: str) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=float)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"{what} must be numbers: {exc}") from exc
    if array.ndim != 1:
        raise InvalidInput(f"{what} must be a flat sequence of numbers")
    if array.size == 0:
        raise InvalidInput(f"{what} is empty: nothing to estimate")
    if not np.isfinite(array).all():
        raise InvalidInput(f"{what} holds NaN or infinite values")
    return array


def _bools(values: Sequence[bool], what: str) -> np.ndarray:
    values = list(values)
    for i, v in enumerate(values):
        if not isinstance(v, bool | np.bool_):
            raise InvalidInput(f"{what}[{i}] is {v!r}, not a pass/fail bool")
    return np.asarray(values, dtype=bool)


def _same_length(a: np.ndarray, b: np.ndarray) -> None:
    if a.size == 0 or b.size == 0:
        raise InvalidInput("a paired test needs samples in both runs; one is empty")
    if a.size != b.size:
        raise InvalidInput(f"paired inputs differ in length: {a.size} in A, {b.size} in B")


def _bootstrap_means(values: np.ndarray, *, seed: int, resamples: int) -> np.ndarray:
    """Means of ``resamples`` resamples of ``values`` with replacement, drawn in batches from one seeded stream."""
    if resamples < 1:
        raise InvalidInput(f"resamples must be at least 1, not {resamples}")
    rng = np.random.default_rng(seed)
    n = values.size
    means = np.empty(resamples)
    step = max(1, _CHUNK // n)
    for start in range(0, resamples, step):
        stop = min(start + step, resamples)
        means[start:stop] = values[rng.integers(0, n, size=(stop - start, n))].mean(axis=1)
    return means


def _percentiles(means: np.ndarray, confidence: float) -> tuple[float, float]:
    alpha = 1 - confidence
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval for a proportion ``successes / n``.

    ``(p + z²/2n ± z·sqrt(p(1-p)/n + z²/4n²)) / (1 + z²/n)`` with ``z`` the normal quantile at ``(1 + confidence)/2``.
    Unlike the Wald interval it stays inside [0, 1] and keeps its coverage near 0% and 100%. ``n = 0`` gives
    ``(0.0, 1.0)``: no samples, no information.
    """
    _check_confidence(confidence)
    if n < 0 or not 0 <= successes <= n:
        raise InvalidInput(f"need 0 <= successes <= n, got successes={successes}, n={n}")
    if n == 0:
        return 0.0, 1.0
    z = _z(confidence)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def mean_interval(
    values: Sequence[float], confidence: float = 0.95, *, seed: int = 0, resamples: int = 10_000
) -> tuple[float, float, float]:
    """``(mean, low, high)``: the mean and its percentile bootstrap interval.

    ``low`` and ``high`` are the ``(1 - confidence)/2`` and ``(1 + confidence)/2`` quantiles of the means of
    ``resamples`` resamples with replacement. With one value there is no spread to resample: ``(v, v, v)``.
    """
    _check_confidence(confidence)
    array = _floats(values, "values")
    mean = float(array.mean())
    if array.size < 2:
        return mean, mean, mean
    low, high = _percentiles(_bootstrap_means(array, seed=seed, resamples=resamples), confidence)
    return mean, low, high


def mcnemar(a: Sequence[bool], b: Sequence[bool], *, confidence: float = 0.95) -> McNemarResult:
    """McNemar's test: did the same samples pass more often in run B than in run A?

    Only discordant pairs carry information: ``b01`` (A failed, B passed) and ``b10`` (A passed, B failed). Under no
    difference ``b01 ~ Binomial(b01 + b10, 1/2)``; ``p_value`` is that exact two-sided test (``scipy.stats.binomtest``),
    whatever the count. The chi-square ``(max(|b01 - b10| - 1, 0))² / (b01 + b10)`` (Edwards' continuity correction,
    clamped so equal counts give 0) is reported as a secondary statistic.

    The interval of the difference ``d = (b01 - b10)/n`` is the Wald interval for paired proportions:
    ``d ± z·se``, ``se = sqrt((b01 + b10) - (b01 - b10)²/n) / n``, clipped to [-1, 1]. ``significant`` follows the
    exact p-value, so with few discordant pairs it can disagree with the (approximate) interval.
    """
    _check_confidence(confidence)
    x, y = _bools(a, "a"), _bools(b, "b")
    _same_length(x, y)
    n = int(x.size)
    b01 = int((~x & y).sum())
    b10 = int((x & ~y).sum())
    discordant = b01 + b10
    if discordant:
        p_value = float(sps.binomtest(b01, discordant, 0.5, alternative="two-sided").pvalue)
        chi2 = max(abs(b01 - b10) - 1, 0) ** 2 / discordant
        chi2_p = float(sps.chi2.sf(chi2, df=1))
    else:
        p_value, chi2, chi2_p = 1.0, 0.0, 1.0
    d = (b01 - b10) / n
    se = math.sqrt(max(discordant - (b01 - b10) ** 2 / n, 0.0)) / n
    z = _z(confidence)
    return McNemarResult(
        n=n,
        b01=b01,
        b10=b10,
        pass_rate_a=float(x.mean()),
        pass_rate_b=float(y.mean()),
        difference=d,
        ci_low=max(-1.0, d - z * se),
        ci_high=min(1.0, d + z * se),
        confidence=confidence,
        p_value=min(1.0, p_value),
        chi2=chi2,
        chi2_p_value=chi2_p,
        significant=p_value < 1 - confidence,
    )


def paired_bootstrap(
    a: Sequence[float], b: Sequence[float], *, seed: int = 0, resamples: int = 10_000, confidence: float = 0.95
) -> PairedResult:
    """A percentile bootstrap of the mean of ``b[i] - a[i]``, resampling whole pairs.

    The interval takes the ``(1 ± confidence)/2`` quantiles of the resampled mean differences; ``significant`` means
    it excludes 0. ``p_value`` is twice the share of resampled means on the other side of zero from the observed
    difference (``<= 0`` for a positive one, ``>= 0`` for a negative one), capped at 1; 1 when the difference is 0,
    and 0 when no resample crossed zero (read: below ``1/resamples``). Needs at least 2 pairs.
    """
    _check_confidence(confidence)
    x, y = _floats(a, "a"), _floats(b, "b")
    _same_length(x, y)
    if x.size < 2:
        raise InvalidInput("a paired bootstrap needs at least 2 pairs; one pair shows no spread")
    diffs = y - x
    difference = float(diffs.mean())
    means = _bootstrap_means(diffs, seed=seed, resamples=resamples)
    low, high = _percentiles(means, confidence)
    if difference > 0:
        p_value = min(1.0, 2 * float((means <= 0).mean()))
    elif difference < 0:
        p_value = min(1.0, 2 * float((means >= 0).mean()))
    else:
        p_value = 1.0
    return PairedResult(
        n=int(x.size),
        mean_a=float(x.mean()),
        mean_b=float(y.mean()),
        difference=difference,
        ci_low=low,
        ci_high=high,
        confidence=confidence,
        p_value=p_value,
        significant=low > 0 or high < 0,
    )


# --- runs ----------------------------------------------------------------------------------------------------------


def cell_summary(
    records: Iterable[SampleRecord], *, confidence: float = 0.95, seed: int = 0, resamples: int = 10_000
) -> list[CellSummary]:
    """One row per (suite, cell label, scorer), sorted by them, so the order does not depend on completion order.

    A sample counts towards a scorer's row when it carries that scorer's score, skipped or not; a sample with no
    scores at all appears in no row. Mean scores get a bootstrap interval (``mean_interval``), pass rates a Wilson
    interval (``wilson_interval``) over the judged samples that have a pass/fail verdict.
    """
    _check_confidence(confidence)
    groups: dict[ScoreKey, list[SampleRecord]] = {}
    for record in records:
        for scorer in record.scores:
            groups.setdefault((record.suite, record.cell.label, scorer), []).append(record)
    rows = []
    for (suite, _, scorer), members in sorted(groups.items(), key=lambda item: item[0]):
        judged = [r.scores[scorer] for r in members if not r.scores[scorer].skipped]
        verdicts = [s.passed for s in judged if s.passed is not None]
        mean = low = high = None
        if judged:
            mean, low, high = mean_interval([s.value for s in judged], confidence, seed=seed, resamples=resamples)
        passed = sum(verdicts)
        pass_rate = pass_low = pass_high = None
        if verdicts:
            pass_rate = passed / len(verdicts)
            pass_low, pass_high = wilson_interval(passed, len(verdicts), confidence)
        latencies = [r.latency_s for r in members if not r.cached]
        rows.append(
            CellSummary(
                suite=suite,
                cell=members[0].cell,
                scorer=scorer,
                n=len(judged),
                skipped=len(members) - len(judged),
                errors=sum(r.error is not None for r in members),
                mean=mean,
                mean_low=low,
                mean_high=high,
                pass_n=len(verdicts),
                passed=passed,
                pass_rate=pass_rate,
                pass_low=pass_low,
                pass_high=pass_high,
                confidence=confidence,
                cost_usd=math.fsum(r.cost_usd for r in members),
                cached=sum(r.cached for r in members),
                latency_mean_s=statistics.fmean(latencies) if latencies else None,
                latency_median_s=statistics.median(latencies) if latencies else None,
                tokens_in=sum(r.tokens_in for r in members),
                tokens_out=sum(r.tokens_out for r in members),
            )
        )
    return rows


def _index(records: list[SampleRecord], run: str) -> dict[SampleId, SampleRecord]:
    if not records:
        raise InvalidInput(f"run {run} has no samples: nothing to compare")
    index: dict[SampleId, SampleRecord] = {}
    for record in records:
        if record.sample_id in index:
            raise InvalidInput(f"run {run} holds sample {record.sample_id} twice")
        index[record.sample_id] = record
    return index


def _judged(index: dict[SampleId, SampleRecord]) -> dict[ScoreKey, dict[tuple[str, int], Score]]:
    """(suite, cell label, scorer) -> {(case, epoch): score} for scores that were not skipped."""
    out: dict[ScoreKey, dict[tuple[str, int], Score]] = {}
    for (suite, case, label, epoch), record in index.items():
        for scorer, score in record.scores.items():
            if not score.skipped:
                out.setdefault((suite, label, scorer), {})[case, epoch] = score
    return out


def _p(p: float) -> str:
    return "p<0.001" if p < 0.001 else f"p={p:.2g}"


def _verdict(significant: bool) -> str:
    return "significant" if significant else "not significant"


def _sentence(n_pairs: int, unpaired: tuple[int, int], m: McNemarResult | None, boot: PairedResult | None) -> str:
    parts = []
    if m is not None:
        ci = f"{m.confidence * 100:g}% CI {m.ci_low * 100:+.1f} to {m.ci_high * 100:+.1f}"
        parts.append(
            f"pass rate {m.pass_rate_a:.1%} -> {m.pass_rate_b:.1%} ({m.difference * 100:+.1f} points, {ci}), "
            f"McNemar {_p(m.p_value)}: {_verdict(m.significant)}"
        )
    if boot is not None:
        ci = f"{boot.confidence * 100:g}% CI {boot.ci_low:+.3f} to {boot.ci_high:+.3f}"
        parts.append(
            f"mean score {boot.mean_a:.3f} -> {boot.mean_b:.3f} ({boot.difference:+.3f}, {ci}), "
            f"bootstrap {_p(boot.p_value)}: {_verdict(boot.significant)}"
        )
    if not parts:
        parts.append("no paired samples" if n_pairs == 0 else f"{n_pairs} paired sample: too few to compare")
    sentence = "; ".join(parts)
    if any(unpaired):
        sentence += f" (unpaired: {unpaired[0]} judged in A only, {unpaired[1]} in B only)"
    return sentence


def compare_runs(
    a: list[SampleRecord], b: list[SampleRecord], *, confidence: float = 0.95, seed: int = 0, resamples: int = 10_000
) -> list[Comparison]:
    """Run A against run B, pairing samples by ``sample_id`` (suite, case, cell label, epoch).

    One ``Comparison`` per (suite, cell, scorer) found in either run, sorted by them. McNemar's test runs on the pairs
    with a pass/fail verdict in both runs, the paired bootstrap on the pairs' scores (2 pairs or more); both are
    reported when both apply. Raises ``InvalidInput`` when a run is empty, holds a sample twice, or the runs share no
    sample (comparing different models means different cells, which never pair).
    """
    _check_confidence(confidence)
    index_a, index_b = _index(a, "A"), _index(b, "B")
    if not index_a.keys() & index_b.keys():
        raise InvalidInput("runs A and B share no sample (suite, case, cell, epoch): nothing pairs")
    judged_a, judged_b = _judged(index_a), _judged(index_b)
    cells = {(r.suite, r.cell.label): r.cell for r in (*b, *a)}
    comparisons = []
    for key in sorted(judged_a.keys() | judged_b.keys()):
        suite, label, scorer = key
        side_a, side_b = judged_a.get(key, {}), judged_b.get(key, {})
        common = sorted(side_a.keys() & side_b.keys())
        pairs = [(side_a[k], side_b[k]) for k in common]
        verdicts = [(x.passed, y.passed) for x, y in pairs if x.passed is not None and y.passed is not None]
        m = None
        if verdicts:
            m = mcnemar([x for x, _ in verdicts], [y for _, y in verdicts], confidence=confidence)
        boot = None
        if len(pairs) >= 2:
            boot = paired_bootstrap(
                [x.value for x, _ in pairs],
                [y.value for _, y in pairs],
                seed=seed,
                resamples=resamples,
                confidence=confidence,
            )
        unpaired_a, unpaired_b = len(side_a) - len(common), len(side_b) - len(common)
        verdict = m.significant if m is not None else boot.significant if boot is not None else False
        comparisons.append(
            Comparison(
                suite=suite,
                cell=cells[suite, label],
                scorer=scorer,
                n_pairs=len(pairs),
                unpaired_a=unpaired_a,
                unpaired_b=unpaired_b,
                mcnemar=m,
                bootstrap=boot,
                significant=verdict,
                summary=_sentence(len(pairs), (unpaired_a, unpaired_b), m, boot),
            )
        )
    return comparisons
