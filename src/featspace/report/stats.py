"""The statistics of a report: confidence intervals over seeds, paired comparisons of two rows over the seeds they
share, Holm's correction across the rows of a table, and which rows are not significantly worse than the best.

Why paired: in a suite the seed fixes the initialisation and the data order of a run, so the runs of two rows with
the same seed differ only by what the rows change; the difference per seed removes the seed's own effect (a
"lucky" seed lifts every row). The test is Student's paired t-test (``scipy.stats.ttest_rel``, two-sided) on the
differences; the interval of the mean difference is Student's t with n − 1 degrees of freedom
(``scipy.stats.t.interval``), as is the interval of a cell's mean.

Holm's step-down procedure (Holm 1979) controls the family-wise error over the m comparisons of a table column:
with the p-values sorted, p_(1) ≤ … ≤ p_(m), the adjusted p_(i) = max_{j ≤ i} min(1, (m − j + 1) · p_(j)).

Degenerate cases, decided here once: fewer than two values give no std, no interval and no test (NaN); a set of
differences without spread beyond round-off (identical runs, deterministic CPU training of the same configuration)
has the interval [d, d] and p = 1 when d = 0 and p = 0 otherwise, the limits of the t statistic; with fewer than
:data:`MIN_SEEDS` shared seeds no difference is called and nothing is marked best.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as _scipy

__all__ = ["ALPHA", "CONFIDENCE", "MIN_SEEDS", "Paired", "Summary", "holm", "not_worse_than_best",
           "paired_difference", "summarize", "t_interval"]

#: the confidence of every interval in a report
CONFIDENCE = 0.95
#: the significance level of every test in a report (after Holm's correction)
ALPHA = 0.05
#: the fewest shared seeds with which a report calls a difference (with two, a t-test has one degree of freedom
#: and its interval is ±12.7 standard errors wide: any "difference" is noise read as signal)
MIN_SEEDS = 3


@dataclass(frozen=True)
class Summary:
    """Mean, sample std (ddof = 1), count and the 95% Student's t interval of the mean of some values."""

    mean: float
    std: float
    n: int
    ci_low: float
    ci_high: float


@dataclass(frozen=True)
class Paired:
    """``a − b`` over the seeds both have: the count, the mean difference with its 95% t interval and the two-sided
    paired t-test's p-value (NaN below two shared seeds)."""

    n: int
    diff: float
    ci_low: float
    ci_high: float
    p: float


def _finite(values: Sequence[float]) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).ravel()
    if not np.all(np.isfinite(array)):
        raise ValueError("statistics need finite values; drop missing runs first")
    return array


def _no_spread(values: np.ndarray, magnitude: np.ndarray) -> bool:
    """Whether ``values`` are equal up to the round-off of numbers of ``magnitude`` (0.57 − 0.52 and 0.59 − 0.54
    differ in the 17th digit: a t-test would read that as a spread)."""
    return float(np.ptp(values)) <= 1e-12 * max(1.0, float(np.max(np.abs(magnitude))))


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The Student's t confidence interval of the mean of ``values`` (NaN, NaN for fewer than two; a point for
    values without spread)."""
    array = _finite(values)
    if array.size < 2:
        return math.nan, math.nan
    if _no_spread(array, array):  # equal values: the interval is the value (the mean could round off it)
        return float(array[0]), float(array[0])
    mean = float(array.mean())
    sem = float(array.std(ddof=1)) / math.sqrt(array.size)
    low, high = _scipy.t.interval(confidence, array.size - 1, loc=mean, scale=sem)
    return float(low), float(high)


def summarize(values: Sequence[float], confidence: float = CONFIDENCE) -> Summary:
    """:class:`Summary` of at least one value."""
    array = _finite(values)
    if array.size == 0:
        raise ValueError("summarize needs at least one value")
    std = float(array.std(ddof=1)) if array.size > 1 else math.nan
    low, high = t_interval(array, confidence)
    return Summary(float(array.mean()), std, int(array.size), low, high)


def paired_difference(a: Mapping[int, float], b: Mapping[int, float], confidence: float = CONFIDENCE) -> Paired:
    """``a − b`` paired by seed (the keys) over the seeds both have."""
    shared = sorted(set(a) & set(b))
    diffs = _finite([a[s] - b[s] for s in shared])
    n = int(diffs.size)
    if n == 0:
        return Paired(0, math.nan, math.nan, math.nan, math.nan)
    mean = float(diffs.mean())
    if n < 2:
        return Paired(1, mean, math.nan, math.nan, math.nan)
    if _no_spread(diffs, np.asarray([*a.values(), *b.values()], dtype=np.float64)):
        d = float(diffs[0])  # no spread: t is 0/0 or ±inf (or round-off noise), its limits decide
        return Paired(n, d, d, d, 1.0 if d == 0.0 else 0.0)
    low, high = t_interval(diffs, confidence)
    p = float(_scipy.ttest_rel([a[s] for s in shared], [b[s] for s in shared]).pvalue)
    return Paired(n, mean, low, high, p)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values in the input order; NaN entries (no test) stay NaN and do not count in m."""
    values = [float(p) for p in pvalues]
    tested = sorted((p, k) for k, p in enumerate(values) if not math.isnan(p))
    m = len(tested)
    adjusted = [math.nan] * len(values)
    running = 0.0
    for rank, (p, k) in enumerate(tested):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[k] = running
    return adjusted


def not_worse_than_best(samples: Sequence[Mapping[int, float] | None], *, higher_is_better: bool = True,
                        alpha: float = ALPHA, min_seeds: int = MIN_SEEDS) -> tuple[list[bool], str]:
    """Which rows carry the "best" mark: the row with the best mean and every row whose paired difference from it
    (over their shared seeds, Holm-corrected across the other rows) is not significantly worse at ``alpha``.

    ``samples``: per row, seed -> value (None or empty: no value). Returns the marks and, when nothing can be
    marked, why ("" otherwise): fewer than two rows with values, or a comparison with fewer than ``min_seeds``
    shared seeds, in which case no difference can be called and no row is marked.
    """
    marks = [False] * len(samples)
    present = [k for k, s in enumerate(samples) if s]
    if len(present) < 2:
        return marks, "fewer than two rows to compare"
    sign = 1.0 if higher_is_better else -1.0
    means = {k: sign * math.fsum(samples[k].values()) / len(samples[k]) for k in present}  # type: ignore[union-attr]
    best = max(present, key=lambda k: means[k])
    others = [k for k in present if k != best]
    comparisons = [paired_difference(samples[k], samples[best]) for k in others]  # type: ignore[arg-type]
    if any(c.n < min_seeds for c in comparisons):
        return marks, f"fewer than {min_seeds} shared seeds: no difference can be called"
    adjusted = holm([c.p for c in comparisons])
    marks[best] = True
    for k, comparison, p in zip(others, comparisons, adjusted):
        worse = sign * comparison.diff < 0
        marks[k] = not (worse and p < alpha)
    return marks, ""
