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
asymptotic relative efficiency, 3/π), so for them ``se`` is widened by √(π/3); and
being exact, they reject only at the levels their null distribution offers: the
largest one within α is used, and none at all below their floor (2/2ⁿ for n pairs:
6 pairs at α = 0.05, 8 at 0.0125). docs/STATISTICS.md states the same; tests check it
against simulated t and Wilcoxon tests.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from scipy import optimize, stats

from normlab.analysis import ranks

if TYPE_CHECKING:
    from normlab.analysis.stats import Comparison

POWER = 0.8
MAX_SEEDS = 10_000  # beyond this "seeds needed" is reported as out of reach
EXACT_UP_TO = 60  # seeds beyond which a rank test's discrete levels no longer matter
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


def exact_level(n: int, alpha: float, m: int | None = None) -> float:
    """The largest two-sided level within ``alpha`` at which the exact rank test of n
    pairs (or of samples of n and m) can reject; 0 below its floor."""
    cdf = ranks.signed_rank_cdf(n) if m is None else ranks.rank_sum_cdf(n, m)
    levels = 2.0 * cdf[2.0 * cdf <= alpha + 1e-12]
    return float(levels[-1]) if len(levels) else 0.0


def _level(c: Comparison, n: int, alpha: float) -> float:
    """The level the comparison's own test has at ``n`` seeds (``alpha`` for t)."""
    if not c.rank_test:
        return alpha
    return exact_level(n, alpha, None if c.paired else n)


def detectable_for(c: Comparison, alpha: float) -> float:
    """The smallest effect ``c``'s own test detects with 80% power at ``alpha`` (rank
    tests at their exact level; +inf below their floor, NaN without a spread)."""
    level = _level(c, c.n_arm, alpha)
    if level == 0.0:
        return math.inf
    return detectable_effect(c.se, c.df, level)


def seeds_for(c: Comparison, effect: float, alpha: float, target: float = POWER) -> int | None:
    """The fewest seeds per arm at which ``c``'s own test (its spread per seed, its
    efficiency, its exact levels) detects ``effect`` with probability ``target``."""
    sd = c.se * math.sqrt(c.n_arm)  # unpaired: the arms' pooled spread, as if equal sizes
    if not c.rank_test:
        return seeds_needed(sd, effect, alpha, target)
    n = seeds_needed(sd, effect, alpha, target)
    if n is None:
        return None
    for seeds in range(max(n, 2), EXACT_UP_TO + 1):
        level = _level(c, seeds, alpha)
        if level > 0 and power(effect, sd / math.sqrt(seeds), seeds - 1, level) >= target:
            return seeds
    return max(n, EXACT_UP_TO + 1)  # beyond, the exact levels are as good as alpha
