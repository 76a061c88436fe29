"""The power a comparison had: the smallest effect it could detect, and how many seeds
would detect the effect that matters.

A comparison's test is a t-test on the effect's standard error ``se`` with ``df``
degrees of freedom (paired: the per-seed differences' standard deviation over √n, and
n − 1). For a true effect δ the statistic is noncentral t with noncentrality δ/se, so
the two-sided test at level α rejects with probability

    power(δ) = P(T > t₁₋α/₂) + P(T < −t₁₋α/₂),   T ~ t(df, δ/se).

The *detectable effect* is the δ at which power(δ) = 80%. α is the level the smallest
of the claim's m Holm-corrected p-values must beat, α/m, so the figure is what the
study could detect with all its comparisons. The *seeds needed* for an effect Δ is the
smallest n at which a study of n seeds with the same spread (the same standard
deviation per seed) would reach 80% power at Δ. Rank tests (Wilcoxon, Mann-Whitney)
need 1/0.955 times the seeds of the t-test for the same power on normal data (their
asymptotic relative efficiency, 3/π), so for them ``se`` is widened by √(π/3).
docs/STATISTICS.md states the same; a test checks it against simulated t-tests.
"""

from __future__ import annotations

import math

from scipy import optimize, stats

POWER = 0.8
MAX_SEEDS = 10_000  # beyond this "seeds needed" is reported as out of reach
RANK_EFFICIENCY = 3 / math.pi  # Wilcoxon's asymptotic relative efficiency to t


def power(effect: float, se: float, df: float, alpha: float) -> float:
    """Probability that a two-sided t-test at level ``alpha`` rejects when the true
    effect is ``effect``, given the effect's standard error ``se`` and ``df``."""
    if not (se > 0 and df > 0):
        return math.nan
    critical = stats.t.ppf(1 - alpha / 2, df)
    nc = abs(effect) / se
    p = float(stats.nct.sf(critical, df, nc) + stats.nct.cdf(-critical, df, nc))
    if math.isnan(p):  # scipy's noncentral t gives up far in its tail: it is ~1 there
        p = float(stats.norm.sf(critical - nc))
    return min(1.0, p)


def detectable_effect(se: float, df: float, alpha: float, target: float = POWER) -> float:
    """The smallest effect a test with this ``se`` and ``df`` detects with probability
    ``target`` at level ``alpha`` (NaN without a spread: no variation, or too few
    values)."""
    if not (math.isfinite(se) and se > 0 and df > 0):
        return math.nan
    upper = se * (stats.t.ppf(1 - alpha / 2, df) + stats.t.ppf(target, df))
    while power(upper, se, df, alpha) < target:
        upper *= 2
    return float(optimize.brentq(lambda d: power(d, se, df, alpha) - target, 0.0, upper))


def seeds_needed(sd: float, effect: float, alpha: float, target: float = POWER) -> int | None:
    """The fewest seeds (paired: pairs) whose t-test, with per-seed standard deviation
    ``sd``, detects ``effect`` with probability ``target`` at level ``alpha``; None
    when more than ``MAX_SEEDS`` would be needed or there is no spread to go by."""
    if not (math.isfinite(sd) and sd > 0 and effect > 0):
        return None

    def enough(n: int) -> bool:
        return power(effect, sd / math.sqrt(n), n - 1, alpha) >= target

    if not enough(MAX_SEEDS):
        return None
    low, high = 2, MAX_SEEDS  # enough(high); find the first n that is
    while low < high:
        mid = (low + high) // 2
        low, high = (low, mid) if enough(mid) else (mid + 1, high)
    return low
