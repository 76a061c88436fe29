"""Comparisons, Holm correction and verdict rules against scipy and hand computations."""

import math

import numpy as np
import pytest
from scipy import stats

from normlab.analysis.power import detectable_effect, power, seeds_needed
from normlab.analysis.stats import Comparison, compare, holm
from normlab.analysis.verdict import Rule, verdict


def test_unpaired_continuous_is_welch_with_a_bootstrap_interval():
    rng = np.random.default_rng(1)
    a, b = rng.normal(0.98, 0.002, 8), rng.normal(0.95, 0.004, 6)
    c = compare(a, b, paired=False)
    assert c.effect == pytest.approx(a.mean() - b.mean())
    assert c.p == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue)
    assert c.test == "Welch t" and (c.n_arm, c.n_baseline) == (8, 6)
    assert c.ci_low < c.effect < c.ci_high
    assert compare(a, b, paired=False) == c  # a fixed random stream: same data, same CI


def test_paired_uses_per_seed_differences_and_drops_missing_seeds():
    a = [0.97, 0.98, math.nan, 0.975, 0.971]
    b = [0.95, 0.96, 0.94, 0.949, 0.951]
    c = compare(a, b, paired=True)
    kept_a, kept_b = np.array([0.97, 0.98, 0.975, 0.971]), np.array([0.95, 0.96, 0.949, 0.951])
    assert c.n_arm == c.n_baseline == 4
    assert c.effect == pytest.approx((kept_a - kept_b).mean())
    assert c.p == pytest.approx(stats.ttest_rel(kept_a, kept_b).pvalue)


def test_bootstrap_interval_covers_the_true_difference_about_95_percent():
    rng = np.random.default_rng(0)
    hits = 0
    for trial in range(100):
        a, b = rng.normal(1.0, 1.0, 12), rng.normal(0.0, 1.0, 12)
        c = compare(a, b, paired=False, seed=trial)
        hits += c.ci_low <= 1.0 <= c.ci_high
    assert 85 <= hits <= 100  # BCa undercovers a little at n=12; 95 expected


def test_ranked_outcomes_take_infinity_and_rank_tests():
    steps_bn = [300.0, 280.0, 350.0, 310.0]
    steps_none = [900.0, math.inf, 1200.0, 1000.0]  # one run never reached the target
    c = compare(steps_bn, steps_none, paired=False, kind="ranked")
    assert c.test == "Mann-Whitney U"
    assert c.p == pytest.approx(stats.mannwhitneyu(steps_bn, steps_none, method="exact").pvalue)
    assert c.effect == pytest.approx(305.0 - 1100.0)
    assert math.isnan(c.ci_low)  # no interval while a value is infinite
    with pytest.raises(ValueError, match="continuous outcomes must be finite"):
        compare(steps_bn, steps_none, paired=False)


def test_too_few_values_give_no_interval_and_constant_arms_a_definite_p():
    assert math.isnan(compare([1.0, 2.0], [0.0, 1.0], paired=False).ci_low)
    same = compare([0.5] * 4, [0.5] * 4, paired=True)
    assert same.p == 1.0 and same.effect == 0.0
    # no spread: the exact rank tests, 2/C(8,4) unpaired and 2/2^4 paired, never 0
    shifted = compare([1.0] * 4, [0.0] * 4, paired=False)
    assert shifted.p == pytest.approx(2 / 70) and shifted.test == "Mann-Whitney U"
    assert shifted.ci_low == shifted.ci_high == 1.0
    assert compare([1.0] * 4, [0.0] * 4, paired=True).p == pytest.approx(2 / 16)


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
    assert verdict([big_down], [0.01], rule) == "refuted"
    assert verdict([big_up, big_down], [0.01, 0.01], rule) == "inconclusive"
    # significant but too small to matter does not count
    tiny = _c(0.001, 0.0005, 0.0015)
    assert verdict([tiny], [0.001], rule) == "refuted"  # its interval excludes 0.005
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


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # scipy's 0/0 on the way to NaN
def test_bca_falls_back_to_percentiles_where_it_is_undefined():
    # Every resampled median is >= the observed one, so BCa's bias correction is
    # Φ⁻¹(0) and its interval undefined; the percentile interval is what remains.
    arm, baseline = [100.0, 100.0, 100.0, 200.0], [0.0, 0.0, 0.0, 0.0]
    with pytest.warns(stats.DegenerateDataWarning):
        bca = stats.bootstrap((np.array(arm), np.array(baseline)),
                              lambda a, b, axis=-1: np.median(a, axis) - np.median(b, axis),
                              paired=True, method="BCa", rng=np.random.default_rng(0))  # fmt: skip
    assert math.isnan(bca.confidence_interval.low)
    c = compare(arm, baseline, paired=True, kind="ranked")
    assert (c.ci_low, c.ci_high) == (100.0, 200.0) and c.effect == 100.0


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
