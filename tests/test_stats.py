"""Comparisons, Holm correction and verdict rules against scipy and hand computations."""

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from normlab.analysis import ranks
from normlab.analysis.power import (
    detectable_effect,
    detectable_for,
    exact_level,
    power,
    seeds_for,
    seeds_needed,
)
from normlab.analysis.stats import Comparison, compare, holm
from normlab.analysis.verdict import Basis, Decision, Reading, Rule, Verdict, decide, read, verdict


def test_unpaired_continuous_is_welch_with_its_own_t_interval():
    rng = np.random.default_rng(1)
    a, b = rng.normal(0.98, 0.002, 8), rng.normal(0.95, 0.004, 6)
    c = compare(a, b, paired=False)
    welch = stats.ttest_ind(a, b, equal_var=False)
    assert c.effect == pytest.approx(a.mean() - b.mean())
    assert c.p == pytest.approx(welch.pvalue)
    assert (c.ci_low, c.ci_high) == pytest.approx(tuple(welch.confidence_interval(0.95)))
    assert c.test == "Welch t" and (c.n_arm, c.n_baseline) == (8, 6)


def test_paired_uses_per_seed_differences_and_drops_missing_seeds():
    a = [0.97, 0.98, math.nan, 0.975, 0.971]
    b = [0.95, 0.96, 0.94, 0.949, 0.951]
    c = compare(a, b, paired=True)
    kept_a, kept_b = np.array([0.97, 0.98, 0.975, 0.971]), np.array([0.95, 0.96, 0.949, 0.951])
    t = stats.ttest_rel(kept_a, kept_b)
    assert c.n_arm == c.n_baseline == 4
    assert c.effect == pytest.approx((kept_a - kept_b).mean())
    assert c.p == pytest.approx(t.pvalue)
    assert (c.ci_low, c.ci_high) == pytest.approx(tuple(t.confidence_interval(0.95)))


@pytest.mark.parametrize("n", [3, 5, 8])
def test_interval_and_test_agree(n):
    """p < 0.05 exactly when the 95% interval excludes 0, for t and rank methods."""
    rng = np.random.default_rng(n)
    for _ in range(200):
        a, b = rng.normal(0.4, 1, n), rng.normal(0, 1, n)
        for kind in ("continuous", "ranked"):
            for paired in (True, False):
                c = compare(a, b, paired=paired, kind=kind)
                assert (c.p < 0.05) == (c.ci_low > 0 or c.ci_high < 0), (kind, paired, c)


def test_ranked_effect_is_hodges_lehmann_with_the_exact_wilcoxon_interval():
    d = np.array([-25, -50, -50, -75, -75, -25, -50, -75.0])
    for base in (np.zeros(8), np.arange(8.0) * 100, np.array([5, 900, 3, 40, 7, 1, 2, 0.0])):
        c = compare(base + d, base, paired=True, kind="ranked")
        assert c.effect == -50.0  # the median Walsh average, whatever the baseline's values
        # 8 pairs: k = 4 Walsh averages left out at each end (2·P(T <= 3) = 10/256)
        walsh = np.sort([(d[i] + d[j]) / 2 for i in range(8) for j in range(i, 8)])
        assert (c.ci_low, c.ci_high) == (walsh[3], walsh[-4])
        assert c.confidence == pytest.approx(1 - 10 / 256)
        # no zeros: the p is the exact signed-rank p of the same counts
        assert c.p == pytest.approx(2 / 256)


def test_ranked_outcomes_take_infinity_and_rank_tests():
    steps_bn = [300.0, 280.0, 350.0, 310.0]
    steps_none = [900.0, math.inf, 1200.0, 1000.0]  # one run never reached the target
    c = compare(steps_bn, steps_none, paired=False, kind="ranked")
    assert c.test == "Mann-Whitney U"
    assert c.p == pytest.approx(stats.mannwhitneyu(steps_bn, steps_none, method="exact").pvalue)
    finite = np.subtract.outer(steps_bn, [900.0, 1200.0, 1000.0]).ravel()
    assert c.effect == -785.0  # the median of the 16 differences, 4 of them -inf
    assert np.median(np.concatenate([finite, [-np.inf] * 4])) == -785.0
    # 16 differences, k = 1 at each end (2/70 <= 0.05): the lowest rests on +inf
    assert c.ci_low == -math.inf and c.ci_high == finite.max() == -550.0
    with pytest.raises(ValueError, match="continuous outcomes must be finite"):
        compare(steps_bn, steps_none, paired=False)


def test_too_few_values_give_no_interval_and_constant_arms_a_definite_p():
    assert math.isnan(compare([1.0], [0.0], paired=True).ci_low)
    same = compare([0.5] * 4, [0.5] * 4, paired=True)
    assert same.p == 1.0 and same.effect == 0.0
    # no spread: the exact rank tests, 2/C(8,4) unpaired and 2/2^n paired, never 0
    shifted = compare([1.0] * 4, [0.0] * 4, paired=False)
    assert shifted.p == pytest.approx(2 / 70) and shifted.test == "Mann-Whitney U"
    assert shifted.ci_low == shifted.ci_high == 1.0
    four = compare([1.0] * 4, [0.0] * 4, paired=True)
    assert four.p == pytest.approx(2 / 16)  # below the floor of 95%: an unbounded interval
    assert (four.ci_low, four.ci_high) == (-math.inf, math.inf) and four.confidence == 1.0
    eight = compare([1.0] * 8, [0.0] * 8, paired=True)
    assert eight.p == pytest.approx(2 / 256) and eight.ci_low == eight.ci_high == 1.0


def test_equal_counts_of_test_images_compare_equal_whatever_the_rounding():
    """Paired accuracies that differ by the same number of test images go to the rank
    test every time (no spread), never to a t-test with p = 1e-28."""
    rng = np.random.default_rng(3)
    for _ in range(500):
        k, shift = rng.integers(9000, 9900, 3), int(rng.integers(1, 30))
        c = compare(k / 10_000, (k - shift) / 10_000, paired=True)
        assert c.test == "Wilcoxon signed-rank" and c.p == pytest.approx(0.25)
        assert c.effect == pytest.approx(shift / 10_000, abs=1e-12)


def test_exact_null_distributions_match_enumeration():
    signs = np.array(list(itertools.product([0, 1], repeat=6)))
    t = signs @ np.arange(1, 7)
    assert ranks.signed_rank_cdf(6) == pytest.approx([np.mean(t <= v) for v in range(22)])
    # U of samples of 3 and 4: every choice of the first sample's ranks
    u = np.array([sum(r) - 6 for r in itertools.combinations(range(1, 8), 3)])
    assert ranks.rank_sum_cdf(3, 4) == pytest.approx([np.mean(u <= v) for v in range(13)])


def test_holm_matches_hand_computation():
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> max(0.06, 0.04)
    got = holm([0.01, 0.04, 0.03, 0.005, math.nan])
    assert got[:4] == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert math.isnan(got[4])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def _c(effect, low, high):
    return Comparison(effect, low, high, math.nan, "Welch t", 5, 5, False)


def test_verdict_rules():
    rule = Rule(direction=+1, min_effect=0.005)
    big_up, big_down = _c(0.02, 0.01, 0.03), _c(-0.02, -0.03, -0.01)
    assert verdict([big_up, big_up], [0.01, 0.2], rule) == "supported"
    assert decide([big_down], [0.01], rule).basis == Basis.OPPOSITE
    assert verdict([big_down], [0.01], rule) == Verdict.REFUTED == "refuted"
    assert verdict([big_up, big_down], [0.01, 0.01], rule) == "inconclusive"
    # significant but shown smaller than what matters: no effect that matters
    tiny = _c(0.001, 0.0005, 0.0015)
    assert decide([tiny], [0.001], rule) == Decision(
        Verdict.REFUTED, Basis.EQUIVALENCE, (Reading.NEGLIGIBLE,)
    )
    # support needs no more than refutation: a significant effect whose interval still
    # reaches the size that matters, whatever its point estimate
    small = _c(0.003, 0.001, 0.006)
    assert read(small, 0.01, rule) == Reading.FOR and verdict([small], [0.01], rule) == "supported"
    wide = _c(0.001, -0.02, 0.03)
    assert verdict([wide], [0.6], rule) == "inconclusive"
    assert verdict([_c(math.nan, math.nan, math.nan)], [math.nan], rule) == "inconclusive"
    # direction -1: the claim predicts a lower value (e.g. fewer steps to a target)
    assert verdict([big_down], [0.01], Rule(direction=-1, min_effect=0.005)) == "supported"
    with pytest.raises(ValueError, match="direction"):
        Rule(direction=2, min_effect=0.1)


def test_verdict_rules_for_either_direction_and_for_absence():
    big_up, big_down = _c(0.02, 0.01, 0.03), _c(-0.02, -0.03, -0.01)
    tiny, wide = _c(0.001, -0.002, 0.003), _c(0.001, -0.02, 0.03)
    either = Rule(direction=0, min_effect=0.005)
    # an effect that matters either way supports "the choice matters", even both ways
    assert verdict([big_up, big_down], [0.01, 0.01], either) == "supported"
    assert verdict([big_down, tiny], [0.01, 0.5], either) == "supported"
    assert verdict([tiny, tiny], [0.5, 0.5], either) == "refuted"  # both ends within ±0.005
    assert verdict([tiny, _c(-0.001, -0.006, 0.003)], [0.5, 0.5], either) == "inconclusive"
    assert verdict([wide], [0.6], either) == "inconclusive"
    # "nothing beats the default by 0.005": the default − alternative is never below it
    absent = Rule(direction=-1, min_effect=0.005, absent=True)
    assert verdict([big_up, tiny], [0.01, 0.5], absent) == "supported"
    assert verdict([big_up, big_down], [0.01, 0.01], absent) == "refuted"
    assert verdict([wide], [0.6], absent) == "inconclusive"


# -- power ---------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "sd", "alpha"), [(5, 1.0, 0.05), (8, 0.02, 0.0125), (3, 3.0, 0.05)])
def test_detectable_effect_is_detected_80_percent_of_the_time(n, sd, alpha):
    """Simulated paired studies whose true effect is the detectable effect: the paired
    t-test rejects in 80% of them (4,000 studies: ±2 points at 3 standard errors)."""
    effect = detectable_effect(sd / math.sqrt(n), n - 1, alpha)
    rng = np.random.default_rng(7)
    diffs = rng.normal(effect, sd, size=(4000, n))
    p = stats.ttest_1samp(diffs, 0.0, axis=1).pvalue
    assert abs(np.mean(p < alpha) - 0.8) < 0.02
    assert power(effect, sd / math.sqrt(n), n - 1, alpha) == pytest.approx(0.8, abs=1e-6)


def test_seeds_needed_is_the_fewest_that_reach_80_percent():
    n = seeds_needed(1.0, 0.5, 0.05)
    assert power(0.5, 1 / math.sqrt(n), n - 1, 0.05) >= 0.8
    assert power(0.5, 1 / math.sqrt(n - 1), n - 2, 0.05) < 0.8
    assert n == 34  # the textbook figure for d = 0.5, two-sided 5%, 80%: 34 pairs
    assert seeds_needed(1.0, 1e-6, 0.05) is None  # out of reach
    assert seeds_needed(0.0, 0.5, 0.05) is None and math.isnan(detectable_effect(0.0, 4, 0.05))


def test_comparisons_carry_the_standard_error_their_test_uses():
    a, b = np.array([1.0, 2.0, 3.0, 4.5]), np.array([0.5, 1.0, 2.0, 3.0])
    paired = compare(a, b, paired=True)
    assert paired.se == pytest.approx(np.std(a - b, ddof=1) / 2) and paired.df == 3
    t = paired.effect / paired.se  # the paired t statistic, from the same numbers
    assert stats.t.sf(abs(t), 3) * 2 == pytest.approx(paired.p)
    welch = compare(a, b, paired=False)
    assert welch.se == pytest.approx(math.sqrt(a.var(ddof=1) / 4 + b.var(ddof=1) / 4))
    assert stats.t.sf(abs(welch.effect / welch.se), welch.df) * 2 == pytest.approx(welch.p)
    ranked = compare(a, b, paired=True, kind="ranked")
    assert ranked.se == pytest.approx(paired.se / math.sqrt(3 / math.pi))
    assert math.isnan(compare([1.0, math.inf, 2], [0.0, 1, 1], paired=True, kind="ranked").se)


def test_rank_power_knows_the_exact_floor():
    """Wilcoxon's power: nothing below its floor (2/2^n), and at the detectable effect
    about 80% of simulated signed-rank tests reject (the efficiency approximation, at
    the exact level)."""
    four = compare([1.0, 2, 3, 4.5], [0.5, 1, 2, 3], paired=True, kind="ranked")
    assert detectable_for(four, 0.05) == math.inf
    assert exact_level(8, 0.0125) == pytest.approx(2 / 256) and exact_level(7, 0.0125) == 0.0
    rng = np.random.default_rng(11)
    for n in (8, 12):
        d = rng.normal(0, 1, n)
        c = compare(d, np.zeros(n), paired=True, kind="ranked")
        effect = detectable_for(c, 0.05)
        sd = c.se * math.sqrt(n) * math.sqrt(3 / math.pi)  # the differences' own spread
        sims = rng.normal(effect, sd, size=(3000, n))
        p = stats.wilcoxon(sims, axis=1, method="exact").pvalue
        assert abs(np.mean(p < 0.05) - 0.8) < 0.06, n
    # the seeds a rank comparison needs are never below the floor at the family's level
    c = compare(rng.normal(1, 0.2, 5), np.zeros(5), paired=True, kind="ranked")
    assert seeds_for(c, 0.5, 0.0125) >= 8
