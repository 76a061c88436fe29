"""Comparing two arms over seeds: effect, interval and test from one model of the data,
and the Holm correction.

An *arm* is the values of one outcome (final test accuracy, steps to a target, ...) over
the seeds of one configuration; a comparison sets the arm of interest (usually with BN)
against a baseline (usually without). When the arms share seeds (and so data order and
the initial weights of the layers they share) they are *paired*: seed i of one is set
against seed i of the other. The rules, which docs/STATISTICS.md states for users:

- **Continuous outcomes**: the effect is the difference of means (paired: the mean of
  the per-seed differences); the interval is Student's t interval of it, and the test
  the t-test it inverts (paired t, or Welch's t with Welch's degrees of freedom). The
  p-value is below 1 - confidence exactly when the interval excludes 0.
- **Ranked outcomes** (censored values such as steps to a target a run never reached,
  stored as +inf), and continuous ones whose values do not vary at all (t is then
  undefined): the Hodges-Lehmann estimate with the exact interval and p-value of the
  Wilcoxon signed-rank test (paired) or the Mann-Whitney test (unpaired)
  (``analysis.ranks``). With too few seeds for the exact test to reach the level
  (fewer than 6 pairs at 95%) the interval is unbounded, which is what those seeds say.
- **Exact quantities**: values are rounded to 10 significant digits of the largest of
  them before anything is computed, so that accuracies that differ by the same number of test
  images give equal differences however float rounding fell.
- **Holm**: the p-values of one claim's comparisons are corrected together (Holm 1979),
  which controls the family-wise error rate without assuming independence.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from normlab.analysis import ranks
from normlab.analysis.power import RANK_EFFICIENCY

CONFIDENCE = 0.95
KINDS = ("continuous", "ranked")
DIGITS = 10  # significant digits (of the arms' largest value) that count (``exact``)


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
    confidence: float = CONFIDENCE  # the interval's level (rank tests: the exact one)

    @property
    def rank_test(self) -> bool:
        """Whether the test is a rank test (its p has an exact floor)."""
        return self.test.startswith(("Wilcoxon", "Mann-Whitney"))


def exact(values: np.ndarray, scale: float) -> np.ndarray:
    """``values`` rounded to ``DIGITS`` significant decimal digits of ``scale``
    (infinities kept), so that quantities equal in truth (counts of test images over
    10,000) compare equal whatever rounding their floats went through."""
    decimals = DIGITS - 1 - math.floor(math.log10(scale)) if scale > 0 else DIGITS
    with np.errstate(invalid="ignore"):
        rounded = np.round(values, decimals)
    return np.where(np.isfinite(values), rounded, values)


def _scale(*arrays: np.ndarray) -> float:
    finite = np.concatenate([x[np.isfinite(x)] for x in arrays])
    return float(np.max(np.abs(finite))) if len(finite) else 1.0


def _t(a: np.ndarray, b: np.ndarray, paired: bool, confidence: float) -> Comparison | None:
    """The t comparison, or None where there is no spread to estimate (t undefined)."""
    effect = float(np.mean(a - b) if paired else np.mean(a) - np.mean(b))
    se, df = _standard_error(a, b, paired)
    if not se > 0:
        return None
    t = effect / se
    p = float(2.0 * stats.t.sf(abs(t), df))
    half = float(stats.t.ppf(0.5 + confidence / 2.0, df)) * se
    return Comparison(effect, effect - half, effect + half, p,
                      "paired t" if paired else "Welch t", len(a), len(b), paired,
                      float(np.mean(a)), float(np.mean(b)), se, df, confidence)  # fmt: skip


def _ranked(a: np.ndarray, b: np.ndarray, paired: bool, confidence: float) -> Comparison:
    r = (ranks.signed_rank if paired else ranks.rank_sum)(a, b, confidence)
    se, df = _standard_error(a, b, paired)
    return Comparison(r.estimate, r.low, r.high, r.p,
                      "Wilcoxon signed-rank" if paired else "Mann-Whitney U", len(a), len(b),
                      paired, float(np.median(a)), float(np.median(b)),
                      se / math.sqrt(RANK_EFFICIENCY), df, r.confidence)  # fmt: skip


def compare(
    arm: Sequence[float],
    baseline: Sequence[float],
    *,
    paired: bool,
    kind: str = "continuous",
    seed: int = 0,
    confidence: float = CONFIDENCE,
) -> Comparison:
    """Compare ``arm`` with ``baseline`` (values over seeds; NaN = no value).

    ``paired`` arms are aligned by seed: position i of each is the same seed, and a seed
    missing from either arm is dropped from both. ``kind`` "ranked" uses the exact rank
    methods, so +inf (e.g. a target never reached) is a valid, largest value. The
    interval has level ``confidence``. ``seed`` is accepted for scripts written against
    the bootstrap this replaced; nothing here is random any more.
    """
    del seed
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    a, b = np.asarray(arm, dtype=float), np.asarray(baseline, dtype=float)
    if paired:
        if len(a) != len(b):
            raise ValueError(f"paired arms need equal lengths, got {len(a)} and {len(b)}")
        keep = ~(np.isnan(a) | np.isnan(b))
        a, b = a[keep], b[keep]
    else:
        a, b = a[~np.isnan(a)], b[~np.isnan(b)]
    if kind == "continuous" and not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("continuous outcomes must be finite; use kind='ranked' for censored ones")
    if min(len(a), len(b)) < 2:
        nan = math.nan
        return Comparison(nan, nan, nan, nan, "none (fewer than 2 values)", len(a), len(b),
                          paired)  # fmt: skip
    scale = _scale(a, b)
    a, b = exact(a, scale), exact(b, scale)
    if kind == "continuous":
        t = _t(a, b, paired, confidence)
        if t is not None:
            return t
    return _ranked(a, b, paired, confidence)


def _standard_error(a: np.ndarray, b: np.ndarray, paired: bool) -> tuple[float, float]:
    """The effect's standard error and degrees of freedom (paired: of the differences;
    else Welch's); NaN with fewer than 2 values or any infinite one."""
    if min(len(a), len(b)) < 2 or not (np.isfinite(a).all() and np.isfinite(b).all()):
        return math.nan, math.nan
    if paired:
        d = exact(a - b, _scale(a, b))
        # equal values' mean is not always exact, so their std can come out 1e-19
        sd = float(np.std(d, ddof=1)) if np.ptp(d) > 0 else 0.0
        return sd / math.sqrt(len(a)), len(a) - 1.0
    if np.ptp(a) == 0 and np.ptp(b) == 0:
        return 0.0, float(len(a) + len(b) - 2)
    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
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
