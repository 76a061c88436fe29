"""Comparing two arms over seeds: effect, bootstrap interval, test, Holm correction.

An *arm* is the values of one outcome (final test accuracy, steps to a target, ...) over
the seeds of one configuration; a comparison sets the arm of interest (usually with BN)
against a baseline (usually without). The rules, which docs/STATISTICS.md states for
users:

- **Effect**: the difference of means, arm minus baseline, in the outcome's own units
  (of medians for ranked outcomes, which may be infinite: a median run that never
  reached a target). When the arms share seeds (and so data order and the initial
  weights of the layers they share) they are *paired*: resampling and tests keep each
  seed's two values together.
- **Interval**: a 95% bootstrap interval of that effect (BCa, 9,999 resamples, fixed
  random stream so that the same data give the same interval). Resampling is over seeds,
  pairs kept together when paired. With fewer than 3 values per arm there is no interval.
- **Test**: paired t-test or Welch's t-test for continuous outcomes; Wilcoxon signed-rank
  or Mann-Whitney U for ranked outcomes (those with censored values, such as steps to a
  target that a run never reached, recorded as +inf), and for continuous ones without
  any spread, where t is undefined. Two-sided, exact where scipy computes it exactly.
- **Holm**: the p-values of one claim's comparisons are corrected together (Holm 1979),
  which controls the family-wise error rate without assuming independence.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from normlab.analysis.power import RANK_EFFICIENCY

CONFIDENCE = 0.95
RESAMPLES = 9999
MIN_FOR_INTERVAL = 3
KINDS = ("continuous", "ranked")
EXACT_UP_TO = 20  # values per arm up to which Mann-Whitney's p is exact


@dataclass(frozen=True)
class Comparison:
    """One arm against its baseline: effect (arm - baseline) with its interval and test."""

    effect: float
    ci_low: float
    ci_high: float
    p: float
    test: str
    n_arm: int
    n_baseline: int
    paired: bool
    # the arms' own centres (means, or medians for ranked outcomes) over the seeds used
    arm_center: float = math.nan
    baseline_center: float = math.nan
    # the effect's standard error and degrees of freedom, as the t-test sees them (rank
    # tests: widened by their efficiency), for the power (``analysis.power``)
    se: float = math.nan
    df: float = math.nan


def _finite_pairs(arm: np.ndarray, baseline: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keep = ~(np.isnan(arm) | np.isnan(baseline))
    return arm[keep], baseline[keep]


def _interval(
    arm: np.ndarray,
    baseline: np.ndarray,
    paired: bool,
    center: Callable[..., np.ndarray],
    seed: int,
) -> tuple[float, float]:
    if min(len(arm), len(baseline)) < MIN_FOR_INTERVAL or not (
        np.isfinite(arm).all() and np.isfinite(baseline).all()
    ):
        return math.nan, math.nan

    def statistic(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
        return center(a, axis=axis) - center(b, axis=axis)

    spread = np.ptp(arm - baseline) if paired else max(np.ptp(arm), np.ptp(baseline))
    if spread == 0:  # every resample gives the same effect
        effect = float(statistic(arm, baseline))
        return effect, effect

    def bootstrap(method: str) -> tuple[float, float]:
        with warnings.catch_warnings():  # a degenerate BCa is handled by the caller
            warnings.simplefilter("ignore", stats.DegenerateDataWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            result = stats.bootstrap(
                (arm, baseline),
                statistic,
                paired=paired,
                n_resamples=RESAMPLES,
                confidence_level=CONFIDENCE,
                method=method,
                rng=np.random.default_rng(seed),
            )
        return result.confidence_interval

    low, high = bootstrap("BCa")
    if not (math.isfinite(low) and math.isfinite(high)):
        # BCa's acceleration is undefined for some small, tied samples: use percentiles.
        low, high = bootstrap("percentile")
    return float(low), float(high)


def _test(arm: np.ndarray, baseline: np.ndarray, paired: bool, kind: str) -> tuple[float, str]:
    if min(len(arm), len(baseline)) < 2:
        return math.nan, "none (fewer than 2 values)"
    if kind == "continuous":
        # Without spread t is undefined; the rank test's exact p is then the honest one
        # (n identical paired differences give 2/2^n, not 0).
        if paired:
            diff = arm - baseline
            if np.ptp(diff) != 0:
                return float(stats.ttest_rel(arm, baseline).pvalue), "paired t"
        elif np.ptp(arm) != 0 or np.ptp(baseline) != 0:
            return float(stats.ttest_ind(arm, baseline, equal_var=False).pvalue), "Welch t"
    if paired:
        if np.all(arm == baseline):
            return 1.0, "Wilcoxon signed-rank"
        return float(stats.wilcoxon(arm, baseline).pvalue), "Wilcoxon signed-rank"
    # The normal approximation is anti-conservative for a few seeds: exact up to 20 each.
    method = "exact" if max(len(arm), len(baseline)) <= EXACT_UP_TO else "asymptotic"
    return float(stats.mannwhitneyu(arm, baseline, method=method).pvalue), "Mann-Whitney U"


def compare(
    arm: Sequence[float],
    baseline: Sequence[float],
    *,
    paired: bool,
    kind: str = "continuous",
    seed: int = 0,
) -> Comparison:
    """Compare ``arm`` with ``baseline`` (values over seeds; NaN = no value).

    ``paired`` arms are aligned by seed: position i of each is the same seed, and a seed
    missing from either arm is dropped from both. ``kind`` "ranked" uses rank tests, so
    +inf (e.g. a target never reached) is a valid, largest value; the effect is then
    the difference of medians, and no interval is given while a value is infinite.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    a, b = np.asarray(arm, dtype=float), np.asarray(baseline, dtype=float)
    if paired:
        if len(a) != len(b):
            raise ValueError(f"paired arms need equal lengths, got {len(a)} and {len(b)}")
        a, b = _finite_pairs(a, b)
    else:
        a, b = a[~np.isnan(a)], b[~np.isnan(b)]
    if kind == "continuous" and not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("continuous outcomes must be finite; use kind='ranked' for censored ones")
    if len(a) == 0 or len(b) == 0:
        return Comparison(math.nan, math.nan, math.nan, math.nan, "none", len(a), len(b), paired)
    center = np.median if kind == "ranked" else np.mean
    effect = float(center(a) - center(b))  # for means, also the mean paired difference
    low, high = _interval(a, b, paired, center, seed)
    p, test = _test(a, b, paired, kind)
    se, df = _standard_error(a, b, paired)
    if kind == "ranked":
        se /= math.sqrt(RANK_EFFICIENCY)
    return Comparison(effect, low, high, p, test, len(a), len(b), paired,
                      float(center(a)), float(center(b)), se, df)  # fmt: skip


def _standard_error(a: np.ndarray, b: np.ndarray, paired: bool) -> tuple[float, float]:
    """The effect's standard error and degrees of freedom (paired: of the differences;
    else Welch's); NaN with fewer than 2 values or any infinite one."""
    if min(len(a), len(b)) < 2 or not (np.isfinite(a).all() and np.isfinite(b).all()):
        return math.nan, math.nan
    if paired:
        return float(np.std(a - b, ddof=1) / math.sqrt(len(a))), len(a) - 1.0
    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    if va + vb == 0:
        return 0.0, float(len(a) + len(b) - 2)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    return float(math.sqrt(va + vb)), float(df)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-corrected p-values, in the input order (NaN stays NaN and is not counted)."""
    p = np.asarray(pvalues, dtype=float)
    valid = np.flatnonzero(~np.isnan(p))
    m = len(valid)
    corrected = np.full(len(p), math.nan)
    running = 0.0
    for rank, i in enumerate(valid[np.argsort(p[valid], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * p[i]))
        corrected[i] = running
    return corrected.tolist()
