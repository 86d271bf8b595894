"""featspace.report.stats against SciPy and against cases computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from featspace.report.stats import holm, not_worse_than_best, paired_difference, summarize, t_interval


def test_holm_by_hand():
    # p sorted: 0.005 (x4 = 0.02), 0.01 (x3 = 0.03), 0.03 (x2 = 0.06), 0.04 (x1 = 0.04 -> kept monotone: 0.06)
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])  # capped at 1
    adjusted = holm([0.01, math.nan, 0.02])  # NaN: no test, not counted in m = 2
    assert adjusted[0] == pytest.approx(0.02) and math.isnan(adjusted[1]) and adjusted[2] == pytest.approx(0.02)
    assert holm([]) == []


def test_t_interval_by_hand_and_against_scipy():
    values = [1.0, 2.0, 3.0, 4.0]
    half = 3.182446305284263 * statistics_sem(values)  # t_{0.975, 3} from a printed table
    assert t_interval(values) == pytest.approx((2.5 - half, 2.5 + half))
    rng = np.random.default_rng(0)
    for n in (2, 3, 5, 10):
        sample = rng.normal(90.0, 0.7, size=n)
        expected = scipy_stats.t.interval(0.95, n - 1, loc=sample.mean(), scale=scipy_stats.sem(sample))
        assert t_interval(sample) == pytest.approx(expected)
    assert all(math.isnan(x) for x in t_interval([1.0]))
    assert t_interval([0.7, 0.7, 0.7]) == (0.7, 0.7)  # no spread: a point, not NaN


def statistics_sem(values):
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1) / len(values))


def test_summary():
    s = summarize([0.80, 0.82, 0.84])
    assert (s.mean, s.n) == (pytest.approx(0.82), 3) and s.std == pytest.approx(0.02)
    assert (s.ci_low, s.ci_high) == pytest.approx(t_interval([0.80, 0.82, 0.84]))
    one = summarize([0.5])
    assert one.n == 1 and math.isnan(one.std) and math.isnan(one.ci_low)
    with pytest.raises(ValueError):
        summarize([])
    with pytest.raises(ValueError, match="finite"):
        summarize([1.0, math.nan])


def test_paired_difference_by_hand_and_against_scipy():
    a, b = {0: 1.0, 1: 2.0, 2: 4.0, 9: 7.0}, {0: 0.0, 1: 1.0, 2: 1.0, 5: 3.0}  # seeds 9 and 5 are not shared
    result = paired_difference(a, b)
    # differences 1, 1, 3: mean 5/3, sd sqrt(4/3), t = 2.5 with 2 df; the t(2) CDF is 1/2 + t / (2 sqrt(2 + t²))
    assert result.n == 3 and result.diff == pytest.approx(5 / 3)
    assert result.p == pytest.approx(2 * (0.5 - 2.5 / (2 * math.sqrt(2 + 2.5 ** 2))))
    assert result.p == pytest.approx(scipy_stats.ttest_rel([1, 2, 4], [0, 1, 1]).pvalue)
    assert (result.ci_low, result.ci_high) == pytest.approx(t_interval([1.0, 1.0, 3.0]))
    same = paired_difference({0: 0.9, 1: 0.8}, {0: 0.9, 1: 0.8})
    assert (same.diff, same.p, same.ci_low, same.ci_high) == (0.0, 1.0, 0.0, 0.0)
    shifted = paired_difference({0: 1.0, 1: 2.0, 2: 3.0}, {0: 0.5, 1: 1.5, 2: 2.5})
    assert shifted.p == 0.0 and shifted.diff == pytest.approx(0.5)
    single = paired_difference({0: 1.0}, {0: 0.0, 1: 2.0})
    assert single.n == 1 and math.isnan(single.p) and math.isnan(single.ci_low)
    assert paired_difference({0: 1.0}, {1: 1.0}).n == 0


def test_best_mark_goes_to_every_row_not_significantly_worse():
    seeds = range(5)
    best = {s: 0.90 + 0.01 * s for s in seeds}
    by_a_hair = {s: best[s] - 0.001 * (1 + s % 2) for s in seeds}   # always a little lower: significant
    noisy = {s: best[s] + (0.02 if s % 2 else -0.025) for s in seeds}  # lower mean, not significant
    far = {s: best[s] - 0.05 for s in seeds}
    marks, why = not_worse_than_best([best, by_a_hair, noisy, far, None])
    assert why == "" and marks == [True, False, True, False, False]
    p_hair = paired_difference(by_a_hair, best).p
    assert p_hair < 0.05 / 3  # significant even after Holm over the three comparisons
    assert paired_difference(noisy, best).p > 0.05
    # lower is better: the same rows negated mark the same way
    negated = [{s: -v for s, v in x.items()} for x in (best, by_a_hair, noisy, far)]
    assert not_worse_than_best(negated, higher_is_better=False)[0] == [True, False, True, False]


def test_best_mark_needs_three_shared_seeds():
    marks, why = not_worse_than_best([{0: 0.9, 1: 0.91}, {0: 0.5, 1: 0.52}])
    assert marks == [False, False] and "no difference can be called" in why
    marks, why = not_worse_than_best([{0: 0.9, 1: 0.91, 2: 0.9}, {0: 0.5, 3: 0.5, 4: 0.5}])  # one shared seed
    assert marks == [False, False] and why
    assert not_worse_than_best([{0: 0.9}, None])[0] == [False, False]
