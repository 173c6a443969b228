"""Eval statistics against values computed independently of ``mikey.evals.stats``.

Expected values come from hand computation (shown in comments), closed forms evaluated here with the standard
library (``math.comb``, ``math.erfc``, ``statistics.NormalDist``), or scipy used another way than the module uses it.

[NEW98] Newcombe, R. G. (1998). "Two-sided confidence intervals for the single proportion: comparison of seven
        methods." Statistics in Medicine 17, 857-872. Example: 81 of 263, Wilson score 95% interval 0.2553 to 0.3662.
"""

from __future__ import annotations

import math
import random
import statistics
from datetime import UTC, datetime

import pytest
from scipy import stats as sps

from mikey.errors import InvalidInput
from mikey.evals.records import Cell, SampleRecord, Score
from mikey.evals.stats import (
    cell_summary,
    compare_runs,
    mcnemar,
    mean_interval,
    paired_bootstrap,
    wilson_interval,
)

Z95 = statistics.NormalDist().inv_cdf(0.975)  # 1.959963984540054


def wilson_by_roots(x: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson bounds as the roots in pi of (p - pi)² = z² pi (1 - pi) / n, a quadratic solved directly."""
    p = x / n
    qa = 1 + z * z / n
    qb = -(2 * p + z * z / n)
    qc = p * p
    root = math.sqrt(qb * qb - 4 * qa * qc)
    return (-qb - root) / (2 * qa), (-qb + root) / (2 * qa)


def exact_mcnemar_p(b01: int, b10: int) -> float:
    """Two-sided exact McNemar: twice the smaller binomial(b01 + b10, 1/2) tail, capped at 1."""
    m = b01 + b10
    tail = sum(math.comb(m, i) for i in range(min(b01, b10) + 1)) / 2**m
    return min(1.0, 2 * tail)


def paired(b01: int, b10: int, both_pass: int, both_fail: int) -> tuple[list[bool], list[bool]]:
    """Pass/fail of the same samples in runs A and B with the given cell counts of the 2x2 table."""
    pairs = [(False, True)] * b01 + [(True, False)] * b10 + [(True, True)] * both_pass + [(False, False)] * both_fail
    return [x for x, _ in pairs], [y for _, y in pairs]


# --- wilson_interval -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("x", "n"), [(1, 10), (5, 10), (7, 50), (81, 263), (199, 200), (3, 1000)])
def test_wilson_matches_the_roots_of_its_defining_quadratic(x: int, n: int) -> None:
    assert wilson_interval(x, n) == pytest.approx(wilson_by_roots(x, n), abs=1e-12)


@pytest.mark.parametrize(("x", "n"), [(0, 7), (1, 10), (81, 263), (40, 40)])
def test_wilson_agrees_with_scipys_binomtest_interval(x: int, n: int) -> None:
    for confidence in (0.9, 0.95, 0.99):
        ci = sps.binomtest(x, n).proportion_ci(confidence_level=confidence, method="wilson")
        assert wilson_interval(x, n, confidence) == pytest.approx((ci.low, ci.high), abs=1e-12)


def test_wilson_textbook_value() -> None:
    # [NEW98]: 81/263 -> 0.2553 to 0.3662. By hand: p = 0.30798, z²/n = 0.014606, centre = 0.31098,
    # half-width = 0.05546 -> (0.25553, 0.36621).
    low, high = wilson_interval(81, 263)
    assert (round(low, 4), round(high, 4)) == (0.2553, 0.3662)


def test_wilson_edges() -> None:
    assert wilson_interval(0, 0) == (0.0, 1.0)
    # x = 0: the lower root is 0 and the upper is (z²/n) / (1 + z²/n).
    low, high = wilson_interval(0, 20)
    assert low == 0.0
    assert high == pytest.approx((Z95**2 / 20) / (1 + Z95**2 / 20), abs=1e-12)
    low, high = wilson_interval(20, 20)
    assert high == 1.0
    assert low == pytest.approx(1 / (1 + Z95**2 / 20), abs=1e-12)
    narrow, wide = wilson_interval(30, 60, 0.9), wilson_interval(30, 60, 0.99)
    assert wide[0] < narrow[0] < 0.5 < narrow[1] < wide[1]


@pytest.mark.parametrize(("x", "n", "confidence"), [(5, 4, 0.95), (-1, 4, 0.95), (1, -1, 0.95), (1, 4, 1.0)])
def test_wilson_rejects_impossible_input(x: int, n: int, confidence: float) -> None:
    with pytest.raises(InvalidInput):
        wilson_interval(x, n, confidence)


# --- mean_interval ---------------------------------------------------------------------------------------------------


def test_mean_interval_is_close_to_the_normal_interval_for_many_values() -> None:
    # 400 evenly spread values: the bootstrap distribution of the mean is close to normal with sd = pstdev / sqrt(n),
    # so the percentile interval should sit within a few percent of mean +- z * sd.
    values = [i / 399 for i in range(400)]
    half = Z95 * statistics.pstdev(values) / math.sqrt(len(values))  # ~0.0284
    mean, low, high = mean_interval(values)
    assert mean == pytest.approx(0.5, abs=1e-12)
    assert low == pytest.approx(0.5 - half, abs=0.05 * half)
    assert high == pytest.approx(0.5 + half, abs=0.05 * half)


def test_mean_interval_agrees_with_scipys_percentile_bootstrap() -> None:
    values = [0.0, 0.2, 0.2, 0.5, 0.7, 0.9, 1.0, 1.0, 0.3, 0.6] * 5
    ref = sps.bootstrap((values,), statistics.fmean, method="percentile", n_resamples=20_000, rng=7, vectorized=False)
    mean, low, high = mean_interval(values, resamples=20_000)
    width = ref.confidence_interval.high - ref.confidence_interval.low
    assert mean == pytest.approx(statistics.fmean(values), abs=1e-12)
    assert low == pytest.approx(ref.confidence_interval.low, abs=0.05 * width)
    assert high == pytest.approx(ref.confidence_interval.high, abs=0.05 * width)


def test_mean_interval_degenerate_inputs() -> None:
    assert mean_interval([0.25] * 30) == pytest.approx((0.25, 0.25, 0.25), abs=1e-15)
    assert mean_interval([0.7]) == (0.7, 0.7, 0.7)


def test_mean_interval_is_deterministic_given_a_seed() -> None:
    values = [0.1, 0.9, 0.4, 0.4, 0.8, 0.0, 1.0, 0.3]
    assert mean_interval(values, seed=3) == mean_interval(values, seed=3)
    assert mean_interval(values, seed=3) != mean_interval(values, seed=4)


@pytest.mark.parametrize("values", [[], [0.5, float("nan")], ["a", "b"]])
def test_mean_interval_rejects_bad_values(values: list) -> None:
    with pytest.raises(InvalidInput):
        mean_interval(values)


def test_mean_interval_rejects_zero_resamples() -> None:
    with pytest.raises(InvalidInput, match="resamples"):
        mean_interval([0.1, 0.2], resamples=0)


# --- mcnemar ---------------------------------------------------------------------------------------------------------


def test_mcnemar_the_issues_example_70_to_80_percent_on_200_cases() -> None:
    # 200 cases: 130 pass in both, 30 fail in both, 30 fail->pass (b01), 10 pass->fail (b10).
    # A passes 130 + 10 = 140 (70%), B passes 130 + 30 = 160 (80%): d = (30 - 10) / 200 = +0.10.
    # se = sqrt(40 - 20²/200) / 200 = sqrt(38) / 200 = 0.030822; 95% CI = 0.10 +- 1.95996 * 0.030822
    #    = (0.039590, 0.160410).
    # Exact p = 2 * sum_{i<=10} C(40, i) / 2^40 = 0.0022214.
    # Chi-square (corrected) = (|30 - 10| - 1)² / 40 = 361 / 40 = 9.025; p = erfc(sqrt(9.025 / 2)) = 0.0026631.
    a, b = paired(b01=30, b10=10, both_pass=130, both_fail=30)
    result = mcnemar(a, b)
    assert (result.n, result.b01, result.b10) == (200, 30, 10)
    assert result.pass_rate_a == pytest.approx(0.70)
    assert result.pass_rate_b == pytest.approx(0.80)
    assert result.difference == pytest.approx(0.10)
    se = math.sqrt(38) / 200
    assert (result.ci_low, result.ci_high) == pytest.approx((0.10 - Z95 * se, 0.10 + Z95 * se), abs=1e-12)
    assert (round(result.ci_low, 4), round(result.ci_high, 4)) == (0.0396, 0.1604)
    assert result.p_value == pytest.approx(exact_mcnemar_p(30, 10), rel=1e-9)
    assert result.p_value == pytest.approx(0.0022214, abs=1e-7)
    assert result.chi2 == pytest.approx(9.025)
    assert result.chi2_p_value == pytest.approx(math.erfc(math.sqrt(9.025 / 2)), rel=1e-9)
    assert result.significant


def test_mcnemar_ignores_the_order_of_the_pairs() -> None:
    a, b = paired(b01=30, b10=10, both_pass=130, both_fail=30)
    pairs = list(zip(a, b, strict=True))
    random.Random(0).shuffle(pairs)
    shuffled = mcnemar([x for x, _ in pairs], [y for _, y in pairs])
    assert shuffled == mcnemar(a, b)


def test_mcnemar_no_difference_is_not_significant() -> None:
    # b01 = b10 = 15 on 200: d = 0, 2 * P(X <= 15 | 30, 1/2) > 1 so p = 1; se = sqrt(30) / 200.
    a, b = paired(b01=15, b10=15, both_pass=140, both_fail=30)
    result = mcnemar(a, b)
    assert result.difference == 0
    assert result.p_value == 1.0 == exact_mcnemar_p(15, 15)
    assert result.chi2 == 0.0
    assert result.chi2_p_value == 1.0
    se = math.sqrt(30) / 200
    assert (result.ci_low, result.ci_high) == pytest.approx((-Z95 * se, Z95 * se), abs=1e-12)
    assert not result.significant


def test_mcnemar_small_counts_use_the_exact_tail() -> None:
    # 6 discordant pairs, all fail->pass: p = 2 * (1/2)^6 = 0.03125 < 0.05. With 5: 2 * (1/2)^5 = 0.0625.
    six = mcnemar(*paired(b01=6, b10=0, both_pass=10, both_fail=4))
    assert six.p_value == pytest.approx(0.03125, rel=1e-12)
    assert six.significant
    five = mcnemar(*paired(b01=5, b10=0, both_pass=10, both_fail=5))
    assert five.p_value == pytest.approx(0.0625, rel=1e-12)
    assert not five.significant


def test_mcnemar_without_discordant_pairs() -> None:
    result = mcnemar([True, False, True], [True, False, True])
    assert (result.b01, result.b10, result.p_value, result.difference) == (0, 0, 1.0, 0.0)
    assert (result.ci_low, result.ci_high) == (0.0, 0.0)
    assert not result.significant


def test_mcnemar_is_antisymmetric() -> None:
    a, b = paired(b01=30, b10=10, both_pass=130, both_fail=30)
    forward, backward = mcnemar(a, b), mcnemar(b, a)
    assert backward.difference == pytest.approx(-forward.difference)
    assert (backward.ci_low, backward.ci_high) == pytest.approx((-forward.ci_high, -forward.ci_low))
    assert backward.p_value == pytest.approx(forward.p_value)


def test_mcnemar_rejects_bad_input() -> None:
    with pytest.raises(InvalidInput, match="empty"):
        mcnemar([], [])
    with pytest.raises(InvalidInput, match="length"):
        mcnemar([True, False], [True])
    with pytest.raises(InvalidInput, match="bool"):
        mcnemar([1, 0], [0, 1])  # type: ignore[list-item]


# --- paired_bootstrap -----------------------------------------------------------------------------------------------


def test_paired_bootstrap_identical_runs() -> None:
    a = [0.1, 0.5, 0.9, 0.3, 0.3, 1.0]
    result = paired_bootstrap(a, list(a))
    assert (result.difference, result.ci_low, result.ci_high, result.p_value) == (0.0, 0.0, 0.0, 1.0)
    assert not result.significant


def test_paired_bootstrap_constant_shift() -> None:
    # Every pair differs by exactly +0.1 (up to float rounding): every resample's mean difference is 0.1.
    a = [i / 100 for i in range(50)]
    b = [x + 0.1 for x in a]
    result = paired_bootstrap(a, b)
    assert result.difference == pytest.approx(0.1, abs=1e-12)
    assert (result.ci_low, result.ci_high) == pytest.approx((0.1, 0.1), abs=1e-12)
    assert result.p_value == 0.0
    assert result.significant


def test_paired_bootstrap_is_close_to_the_normal_approximation() -> None:
    # Differences d_i over 200 pairs: mean 0.04, pstdev 0.3 -> se = 0.3 / sqrt(200) = 0.021213, mean / se = 1.886,
    # so the interval is about 0.04 +- 1.96 * 0.021213 = (-0.0016, 0.0816) and p about 2 * (1 - Phi(1.886)) = 0.059.
    diffs = [0.34 if i % 2 else -0.26 for i in range(200)]
    a = [0.5] * 200
    b = [0.5 + d for d in diffs]
    se = statistics.pstdev(diffs) / math.sqrt(200)
    result = paired_bootstrap(a, b)
    assert result.difference == pytest.approx(0.04, abs=1e-12)
    assert result.ci_low == pytest.approx(0.04 - Z95 * se, abs=0.004)
    assert result.ci_high == pytest.approx(0.04 + Z95 * se, abs=0.004)
    assert result.p_value == pytest.approx(2 * (1 - statistics.NormalDist().cdf(0.04 / se)), abs=0.015)
    assert not result.significant


def test_paired_bootstrap_is_antisymmetric_given_a_seed() -> None:
    a = [0.2, 0.4, 0.9, 0.1, 0.7, 0.5, 0.5, 0.8]
    b = [0.3, 0.6, 0.8, 0.4, 0.9, 0.5, 0.7, 0.9]
    forward, backward = paired_bootstrap(a, b, seed=5), paired_bootstrap(b, a, seed=5)
    assert backward.difference == pytest.approx(-forward.difference)
    assert (backward.ci_low, backward.ci_high) == pytest.approx((-forward.ci_high, -forward.ci_low))
    assert backward.p_value == pytest.approx(forward.p_value)


def test_paired_bootstrap_is_deterministic_given_a_seed() -> None:
    a = [0.2, 0.4, 0.9, 0.1, 0.7, 0.5, 0.5, 0.8]
    b = [0.3, 0.6, 0.8, 0.4, 0.9, 0.5, 0.7, 0.9]
    assert paired_bootstrap(a, b, seed=11) == paired_bootstrap(a, b, seed=11)
    assert paired_bootstrap(a, b, seed=11) != paired_bootstrap(a, b, seed=12)  # the p-values differ (0.0044, 0.0076)


def test_paired_bootstrap_rejects_bad_input() -> None:
    with pytest.raises(InvalidInput, match="empty"):
        paired_bootstrap([], [])
    with pytest.raises(InvalidInput, match="length"):
        paired_bootstrap([0.1, 0.2], [0.1])
    with pytest.raises(InvalidInput, match="at least 2"):
        paired_bootstrap([0.1], [0.2])
    with pytest.raises(InvalidInput, match="NaN"):
        paired_bootstrap([0.1, float("nan")], [0.2, 0.3])
    with pytest.raises(InvalidInput, match="confidence"):
        paired_bootstrap([0.1, 0.2], [0.2, 0.3], confidence=95)


# --- runs ------------------------------------------------------------------------------------------------------------

WHEN = datetime(2026, 1, 1, tzinfo=UTC)
FAST = Cell(group="fast")
SMART = Cell(group="smart", prompt="chat/analyze@2")


def record(case: str, scores: dict[str, Score], *, cell: Cell = FAST, suite: str = "intent", **extra) -> SampleRecord:
    return SampleRecord(
        run_id="r",
        suite=suite,
        case_id=case,
        cell=cell,
        target="node",
        input=case,
        scores=scores,
        key=f"{suite}/{case}/{cell.label}",
        finished_at=WHEN,
        **extra,
    )


def verdict(passed: bool) -> Score:
    return Score(value=1.0 if passed else 0.0, passed=passed)


def test_cell_summary() -> None:
    records = [
        record("c1", {"exact": verdict(True), "judge": Score(value=0.8)}, cost_usd=0.1, latency_s=1.0, tokens_in=10),
        record("c2", {"exact": verdict(False), "judge": Score(value=0.4)}, cost_usd=0.2, latency_s=3.0, tokens_out=5),
        record("c3", {"exact": verdict(True), "judge": Score(value=0, skipped=True)}, cost_usd=0.3, latency_s=8.0),
        record("c4", {"exact": verdict(True)}, cached=True, latency_s=0.0, error=None),
        record("c1", {"exact": verdict(False)}, cell=SMART, error="boom"),
    ]
    rows = cell_summary(records)
    assert [(r.cell.label, r.scorer) for r in rows] == [
        ("fast", "exact"),
        ("fast", "judge"),
        ("smart | chat/analyze@2", "exact"),
    ]
    exact, judge, smart = rows
    # exact in fast: 3 of 4 pass; mean score 0.75; Wilson from the quadratic's roots.
    assert (exact.n, exact.skipped, exact.passed, exact.pass_n) == (4, 0, 3, 4)
    assert exact.pass_rate == 0.75
    assert (exact.pass_low, exact.pass_high) == pytest.approx(wilson_by_roots(3, 4), abs=1e-12)
    assert exact.mean == 0.75
    assert exact.mean_low is not None and exact.mean_high is not None
    assert 0 <= exact.mean_low <= 0.75 <= exact.mean_high <= 1
    assert exact.cost_usd == pytest.approx(0.6)
    assert exact.cached == 1
    # Latency over the 3 samples not from the cache: mean (1 + 3 + 8) / 3 = 4, median 3.
    assert (exact.latency_mean_s, exact.latency_median_s) == (4.0, 3.0)
    assert (exact.tokens_in, exact.tokens_out) == (10, 5)
    # judge: c3 skipped; mean of 0.8 and 0.4; no pass/fail verdicts.
    assert (judge.n, judge.skipped) == (2, 1)
    assert judge.mean == pytest.approx(0.6)
    assert (judge.pass_rate, judge.pass_low, judge.pass_high, judge.pass_n) == (None, None, None, 0)
    assert judge.cost_usd == pytest.approx(0.6)
    assert (smart.n, smart.errors, smart.pass_rate) == (1, 1, 0.0)
    assert (smart.mean, smart.mean_low, smart.mean_high) == (0.0, 0.0, 0.0)


def test_cell_summary_all_skipped_and_empty() -> None:
    (row,) = cell_summary([record("c1", {"judge": Score(value=0, skipped=True)}, cached=True)])
    assert (row.n, row.skipped, row.mean, row.mean_low, row.pass_rate) == (0, 1, None, None, None)
    assert (row.latency_mean_s, row.latency_median_s) == (None, None)
    assert cell_summary([]) == []


def two_runs(b01: int, b10: int, both_pass: int, both_fail: int) -> tuple[list[SampleRecord], list[SampleRecord]]:
    a, b = paired(b01, b10, both_pass, both_fail)
    run_a = [record(f"case{i}", {"exact": verdict(x)}) for i, x in enumerate(a)]
    run_b = [record(f"case{i}", {"exact": verdict(y)}) for i, y in enumerate(b)]
    return run_a, run_b


def test_compare_runs_the_issues_example() -> None:
    run_a, run_b = two_runs(b01=30, b10=10, both_pass=130, both_fail=30)
    random.Random(1).shuffle(run_b)  # pairing goes by sample id, not by position
    (comparison,) = compare_runs(run_a, run_b)
    assert (comparison.suite, comparison.cell, comparison.scorer) == ("intent", FAST, "exact")
    assert (comparison.n_pairs, comparison.unpaired_a, comparison.unpaired_b) == (200, 0, 0)
    m = comparison.mcnemar
    assert m is not None
    assert (m.b01, m.b10) == (30, 10)
    assert m.p_value == pytest.approx(exact_mcnemar_p(30, 10), rel=1e-9)
    assert comparison.significant
    # Scores are 1/0 with the verdicts: the bootstrap sees the same +0.10 mean difference.
    boot = comparison.bootstrap
    assert boot is not None
    assert boot.difference == pytest.approx(0.10)
    assert boot.significant
    # CI 0.0396 to 0.1604 from the hand computation above; p = 0.0022214 -> "0.0022".
    assert comparison.summary.startswith(
        "pass rate 70.0% -> 80.0% (+10.0 points, 95% CI +4.0 to +16.0), McNemar p=0.0022: significant; "
        "mean score 0.700 -> 0.800 (+0.100, 95% CI +0.0"
    )
    assert comparison.summary.endswith(": significant")


def test_compare_runs_no_difference() -> None:
    (comparison,) = compare_runs(*two_runs(b01=15, b10=15, both_pass=140, both_fail=30))
    assert comparison.mcnemar is not None and comparison.mcnemar.p_value == 1.0
    assert not comparison.significant
    assert "McNemar p=1: not significant" in comparison.summary


def test_compare_runs_counts_unpaired_and_skipped_samples() -> None:
    run_a, run_b = two_runs(b01=3, b10=1, both_pass=4, both_fail=2)
    run_a.append(record("extra", {"exact": verdict(True)}))  # A only
    run_b[0] = record("case0", {"exact": Score(value=0, skipped=True)})  # B skipped it
    run_b.append(record("case0", {"exact": verdict(True)}, cell=SMART))  # a cell only B has
    fast, smart = compare_runs(run_a, run_b)
    assert (fast.n_pairs, fast.unpaired_a, fast.unpaired_b) == (9, 2, 0)
    assert fast.mcnemar is not None and (fast.mcnemar.b01, fast.mcnemar.b10) == (2, 1)
    assert fast.summary.endswith("(unpaired: 2 judged in A only, 0 in B only)")
    assert (smart.cell, smart.n_pairs, smart.unpaired_a, smart.unpaired_b) == (SMART, 0, 0, 1)
    assert (smart.mcnemar, smart.bootstrap, smart.significant) == (None, None, False)
    assert smart.summary == "no paired samples (unpaired: 0 judged in A only, 1 in B only)"


def test_compare_runs_pairs_epochs_separately_and_bootstraps_scores_without_verdicts() -> None:
    run_a = [record("c", {"judge": Score(value=0.5)}, epoch=e) for e in range(4)]
    run_b = [record("c", {"judge": Score(value=0.6)}, epoch=e) for e in range(4)]
    (comparison,) = compare_runs(run_a, run_b)
    assert comparison.n_pairs == 4
    assert comparison.mcnemar is None
    assert comparison.bootstrap is not None
    assert comparison.bootstrap.difference == pytest.approx(0.1)
    assert comparison.significant
    assert comparison.summary.startswith("mean score 0.500 -> 0.600 (+0.100, 95% CI +0.100 to +0.100), bootstrap p<")


def test_compare_runs_with_one_pair_has_no_bootstrap() -> None:
    (comparison,) = compare_runs([record("c", {"judge": Score(value=0.5)})], [record("c", {"judge": Score(value=1)})])
    assert (comparison.n_pairs, comparison.mcnemar, comparison.bootstrap) == (1, None, None)
    assert comparison.summary == "1 paired sample: too few to compare"


def test_compare_runs_rejects_unusable_runs() -> None:
    one = [record("c", {"exact": verdict(True)})]
    with pytest.raises(InvalidInput, match="run A has no samples"):
        compare_runs([], one)
    with pytest.raises(InvalidInput, match="run B has no samples"):
        compare_runs(one, [])
    with pytest.raises(InvalidInput, match="twice"):
        compare_runs(one * 2, one)
    with pytest.raises(InvalidInput, match="share no sample"):
        compare_runs(one, [record("c", {"exact": verdict(True)}, cell=SMART)])
