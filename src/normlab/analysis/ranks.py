"""Exact rank methods: the Hodges-Lehmann estimate with the interval and p-value that
invert the Wilcoxon signed-rank (paired) or Mann-Whitney (unpaired) test.

Both tests count *elementary estimates* of the effect: the Walsh averages
(d_i + d_j) / 2, i <= j, of n paired differences, or the m·n differences a_i - b_j of two
samples. Under no effect the number of them above zero has a known distribution (the
signed-rank or the Mann-Whitney U null, computed exactly here for any n); the estimate
is their median, and the interval runs from the k-th smallest to the k-th largest, with
k the largest count whose two-sided tail stays within 1 - confidence. The p-value is
the smallest level at which 0 leaves that interval, so the two never disagree.

Ties and zeros are counted against a rejection (an elementary estimate equal to 0 is
neither above nor below it), which keeps the test and the closed interval
conservative for discrete outcomes such as steps on an evaluation grid. Censored
values (+inf: a target never reached) enter as a value larger than every finite one,
two censored values as equal; an interval end that rests on one is infinite.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RankResult:
    """The Hodges-Lehmann estimate, its exact interval, and the test's two-sided p."""

    estimate: float
    low: float
    high: float
    p: float
    confidence: float  # the interval's exact level (at least the one asked; 1: unbounded)


@functools.cache
def signed_rank_cdf(n: int) -> np.ndarray:
    """P(T <= t) for t = 0 .. n(n+1)/2, T the signed-rank statistic of n pairs under no
    effect (each rank's sign a fair coin)."""
    counts = np.zeros(n * (n + 1) // 2 + 1)
    counts[0] = 1.0
    for r in range(1, n + 1):
        counts[r:] = counts[r:] + counts[:-r].copy()
    return np.cumsum(counts) / 2.0**n


@functools.cache
def rank_sum_cdf(m: int, n: int) -> np.ndarray:
    """P(U <= u) for u = 0 .. m·n, U the Mann-Whitney statistic of samples of m and n
    under no effect (every ordering of the m + n values equally likely)."""
    # ways[i][j] counts orderings of i + j values by U; ways(i, j) = ways(i-1, j) shifted by
    # j (the largest value is from the first sample) + ways(i, j-1).
    ways = [[np.ones(1)] * (n + 1)]
    for i in range(1, m + 1):
        row = [np.ones(1)]
        for j in range(1, n + 1):
            out = np.zeros(i * j + 1)
            above = ways[i - 1][j]
            out[j : j + len(above)] += above
            out[: len(row[j - 1])] += row[j - 1]
            row.append(out)
        ways.append(row)
    counts = ways[m][n]
    return np.cumsum(counts) / counts.sum()


def _finite_surrogate(values: np.ndarray) -> tuple[np.ndarray, float]:
    """``values`` with +inf replaced by one number far beyond every finite one, and the
    bound beyond which an elementary estimate rests on a censored value."""
    finite = values[np.isfinite(values)]
    scale = float(np.max(np.abs(finite))) if len(finite) else 0.0
    return np.where(np.isinf(values), 16.0 * (scale + 1.0), values), 2.0 * scale


def _invert(estimates: np.ndarray, cdf: np.ndarray, confidence: float, bound: float) -> RankResult:
    """Estimate, interval and p from the sorted elementary estimates and the null cdf."""
    total = len(estimates)
    above, below = int(np.sum(estimates > 0)), int(np.sum(estimates < 0))
    p = min(1.0, 2.0 * float(cdf[total - max(above, below)]))
    # k: how many estimates each end of the interval leaves out (closed ends)
    within = np.flatnonzero(2.0 * cdf <= 1.0 - confidence + 1e-12)
    k = int(within[-1]) + 1 if len(within) else 0

    def shown(x: float) -> float:
        return math.copysign(math.inf, x) if abs(x) > bound else float(x)

    estimate = shown(float(np.median(estimates)))
    if k == 0:
        return RankResult(estimate, -math.inf, math.inf, p, 1.0)
    low, high = shown(estimates[k - 1]), shown(estimates[total - k])
    return RankResult(estimate, low, high, p, 1.0 - 2.0 * float(cdf[k - 1]))


def signed_rank(arm: np.ndarray, baseline: np.ndarray, confidence: float) -> RankResult:
    """Paired: the Hodges-Lehmann estimate of the differences' centre, its exact
    Wilcoxon signed-rank interval and p (``arm`` and ``baseline`` aligned by seed)."""
    a, bound = _finite_surrogate(np.concatenate([arm, baseline]))
    d = a[: len(arm)] - a[len(arm) :]
    i, j = np.triu_indices(len(d))
    walsh = np.sort((d[i] + d[j]) / 2.0)
    return _invert(walsh, signed_rank_cdf(len(d)), confidence, bound)


def rank_sum(arm: np.ndarray, baseline: np.ndarray, confidence: float) -> RankResult:
    """Unpaired: the Hodges-Lehmann shift estimate, its exact Mann-Whitney interval and
    p."""
    v, bound = _finite_surrogate(np.concatenate([arm, baseline]))
    diffs = np.sort(np.subtract.outer(v[: len(arm)], v[len(arm) :]).ravel())
    return _invert(diffs, rank_sum_cdf(len(arm), len(baseline)), confidence, bound)


def floor_p(n: int, m: int | None = None) -> float:
    """The smallest two-sided p the exact test can give: 2/2^n for n pairs (signed
    rank), 2/C(n+m, n) for two samples of n and m (Mann-Whitney)."""
    return min(1.0, 2.0 / (2.0**n if m is None else math.comb(n + m, n)))
