"""From a claim's stored runs to its verdict: group, measure, compare, correct, decide."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from normlab.analysis.power import detectable_effect, seeds_needed
from normlab.analysis.records import RunRecord, records
from normlab.analysis.regime import Regime, regime
from normlab.analysis.stats import Comparison, compare, holm
from normlab.analysis.verdict import Rule, aligned, counts, rules_out, verdict
from normlab.claims.claim import Claim, ClaimError
from normlab.claims.settings import Setting
from normlab.store.db import Store


@dataclass(frozen=True)
class ClaimResult:
    """A claim's verdict with the comparison that carries most weight, and all of them."""

    id: int
    claim: str
    verdict: str
    outcome: str
    effect: float
    ci_low: float
    ci_high: float
    p_corrected: float
    runs: int
    # (label, comparison, Holm-corrected p) of every comparison the verdict rests on
    comparisons: list[tuple[str, Comparison, float]]
    # arm -> (runs that diverged, runs): divergence is an outcome, never dropped silently
    diverged: dict[str, tuple[int, int]] = field(default_factory=dict)
    # (label, comparison) shown beside the verdict, not part of it (p uncorrected)
    context: list[tuple[str, Comparison]] = field(default_factory=list)
    # sentences about the runs: seeds without a value, the claim's own note
    notes: list[str] = field(default_factory=list)
    # units of the claim's study that failed to train (their runs are not judged)
    failures: list[str] = field(default_factory=list)
    title: str = ""  # the claim in a few words
    lead: str = ""  # the label of the comparison whose effect, interval and p are above
    # power (``analysis.power``): per comparison, the smallest effect it detects with 80%
    # power at the family's strictest level; the seeds that would detect the smallest
    # effect that matters (the lead comparison's, or an inconclusive verdict's open
    # ones'; None: out of reach or no spread)
    detectable: dict[str, float] = field(default_factory=dict)
    seeds_needed: int | None = None
    power: str = ""  # what the power says of this verdict, in a sentence
    regime: Regime | None = None  # the data, models, training and seeds judged
    # the measured values the verdict's comparisons rest on: comparison group -> arm ->
    # seed -> value (what ``normlab export --table measures`` writes)
    values: dict[str, dict[str, dict[int, float]]] = field(default_factory=dict)
    setting: str = ""  # the model and dataset judged on, e.g. "MLP/MNIST"

    def as_json(self) -> dict[str, object]:
        """The keys of ``normlab claims --json`` (NaN becomes null)."""
        out: dict[str, object] = {
            "id": self.id,
            "claim": self.claim,
            "verdict": self.verdict,
            "effect": self.effect,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "p_corrected": self.p_corrected,
            "runs": self.runs,
            "detectable_effect": self.detectable.get(self.lead, math.nan),
            "seeds_needed": self.seeds_needed,
            "regime": self.regime.as_json() if self.regime else None,
            "setting": self.setting,
        }
        if self.verdict == NOT_APPLICABLE:
            out["reason"] = self.notes[0]
        return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in out.items()}


NOT_APPLICABLE = "not applicable"


def not_applicable(claim: Claim, setting: Setting) -> ClaimResult:
    """The result of a claim that does not apply to ``setting``, saying why."""
    nan = math.nan
    return ClaimResult(claim.id, claim.claim, NOT_APPLICABLE, claim.outcome, nan, nan, nan,
                       nan, 0, [], notes=[claim.not_applicable(setting)], title=claim.title,
                       setting=setting.label)  # fmt: skip


def factor_value(value: object) -> object:
    """A factor's value as a group key: widths (a tuple) shown as depth × width when
    uniform."""
    if isinstance(value, tuple):
        return f"{len(value)}×{value[0]}" if len(set(value)) == 1 else "-".join(map(str, value))
    return value


# comparison label -> arm value -> seed -> measured value
Arms = dict[str, dict[str, dict[int, float]]]


def judge(store: Store, claim: Claim, study: str) -> ClaimResult:
    """Compare the arm with each baseline in every group of ``claim.by``, apply the rule."""
    return judge_runs(claim, records(store, study))


def judge_runs(claim: Claim, study_runs: list[RunRecord]) -> ClaimResult:
    """``judge`` on the runs of the claim's study, already read."""
    runs = [r for r in study_runs if claim.where is None or claim.where(r.config)]
    wanted = (claim.arm, *claim.baselines, *claim.context)
    runs = [r for r in runs if claim.arm_of(r.config) in wanted]
    groups: dict[tuple, list[RunRecord]] = defaultdict(list)
    diverged: dict[str, list[int]] = {}
    for run in runs:
        arm = claim.arm_of(run.config)
        count = diverged.setdefault(arm, [0, 0])
        count[0] += run.status == "diverged"
        count[1] += 1
        factors = (factor_value(getattr(run.config, f)) for f in claim.by)
        groups[(*factors, arm, run.config.seed)].append(run)

    def measured(measures: dict[str, Callable[..., float]]) -> Arms:
        arms: Arms = defaultdict(lambda: defaultdict(dict))
        for (*by, arm, seed), members in groups.items():
            parts = [f"{f}={v}" for f, v in zip(claim.by, by, strict=True)]
            if claim.across is None and len(members) != 1:
                raise ClaimError(
                    f"claim {claim.id}: {len(members)} runs of seed {seed} in one comparison "
                    f"({', '.join(parts)}); its study varies a factor the claim does not name"
                )
            for name, measure in measures.items():
                value = measure(members if claim.across else members[0])
                label = ", ".join([*parts, name] if name else parts)
                arms[label][arm][seed] = value
                if claim.factor is None:  # a within-run measure, set against no effect
                    arms[label][claim.baselines[0]][seed] = 0.0
        return arms

    values = measured(claim.measures_on(runs[0].config.dataset if runs else "mnist"))
    result = judge_values(claim, values, len(runs), measured(claim.context_measures))
    judged = [r for r in runs if claim.arm_of(r.config) in (claim.arm, *claim.baselines)]
    where = Setting.of(runs[0].config.model, runs[0].config.dataset).label if runs else ""
    result = replace(result, regime=regime(judged), setting=where)
    result.diverged.update({arm: (d, n) for arm, (d, n) in diverged.items()})
    result.notes.extend(_missing(values))
    if claim.note is not None:
        result.notes.append(claim.note(runs))
    return result


def _missing(arms: Arms) -> list[str]:
    """A sentence for each comparison group with seeds that have no value."""
    notes = []
    for label, by_arm in sorted(arms.items()):
        for arm, seeds in by_arm.items():
            none = sorted(s for s, v in seeds.items() if math.isnan(v))
            if none:
                where = f"{label}, " if label else ""
                notes.append(
                    f"{where}{arm}: seed(s) {', '.join(map(str, none))} without a value "
                    "(diverged, failed or not finished), left out of the comparison"
                )
    return notes


def _compare_all(claim: Claim, arms: Arms, baselines: tuple[str, ...]) -> list:
    """(label, comparison) of the arm against each baseline it has runs beside."""
    several = len(claim.baselines) + len(claim.context) > 1
    out = []
    for label in sorted(arms):
        arm = arms[label].get(claim.arm, {})
        for baseline in baselines:
            base = arms[label].get(baseline)
            if not base or not arm:
                continue
            seeds = sorted(set(arm) | set(base))
            comparison = compare(
                [arm.get(s, math.nan) for s in seeds],
                [base.get(s, math.nan) for s in seeds],
                paired=True,
                kind=claim.kind,
            )
            vs = f"vs {baseline}" if several else ""
            out.append((", ".join(t for t in (label, vs) if t), comparison))
    return out


def judge_values(claim: Claim, arms: Arms, runs: int, context: Arms | None = None) -> ClaimResult:
    """The verdict from values already measured (comparison label -> arm value -> seed ->
    value); ``context`` holds the context measures' values, laid out the same way."""
    labelled = _compare_all(claim, arms, claim.baselines)
    corrected = holm([c.p for _, c in labelled])
    comparisons = [(label, c, p) for (label, c), p in zip(labelled, corrected, strict=True)]
    result = verdict([c for _, c, _ in comparisons], corrected, claim.rule)
    # Report the comparison the verdict leans on most: the smallest corrected p (among
    # equals, one with a finite effect, which says more than "never reached"); for a
    # claim of absence, the one whose interval reaches furthest the way it rules out.
    ranked = sorted(
        comparisons,
        key=lambda t: (
            (-_reach(t[1], claim.rule),)
            if claim.rule.absent
            else (math.isnan(t[2]), t[2], not math.isfinite(t[1].effect))
        ),
    )
    label, lead, p = ranked[0] if ranked else ("", None, math.nan)
    # the level the smallest of the family's Holm-corrected p-values must beat
    alpha = claim.rule.alpha / max(1, sum(not math.isnan(q) for _, _, q in comparisons))
    detectable = {lb: detectable_effect(c.se, c.df, alpha) for lb, c, _ in comparisons}
    power, seeds = "", None
    if result == "inconclusive":
        power, seeds = power_sentence(comparisons, detectable, claim.rule, alpha)
    elif lead:
        seeds = seeds_needed(lead.se * math.sqrt(lead.n_arm), claim.rule.min_effect, alpha)
    return ClaimResult(
        id=claim.id,
        claim=claim.claim,
        title=claim.title,
        verdict=result,
        outcome=claim.outcome,
        effect=lead.effect if lead else math.nan,
        ci_low=lead.ci_low if lead else math.nan,
        ci_high=lead.ci_high if lead else math.nan,
        p_corrected=p,
        runs=runs,
        lead=label,
        detectable=detectable,
        seeds_needed=seeds,
        power=power,
        comparisons=comparisons,
        values={
            g: {a: dict(by_seed) for a, by_seed in by_arm.items()} for g, by_arm in arms.items()
        },
        context=_compare_all(claim, arms, claim.context)
        + _compare_all(claim, context or {}, claim.baselines[:1]),
    )


def _reach(c: Comparison, rule: Rule) -> float:
    """How far a comparison's interval reaches in the rule's direction (−∞ without one)."""
    end = max(aligned(c.ci_low, rule), aligned(c.ci_high, rule))
    return end if math.isfinite(end) else -math.inf


def power_sentence(
    comparisons: list[tuple[str, Comparison, float]],
    detectable: dict[str, float],
    rule: Rule,
    alpha: float,
) -> tuple[str, int | None]:
    """Why an inconclusive verdict is inconclusive, and the seeds that would settle it:
    comparisons that disagree; too few seeds for the comparisons left open (neither
    counting nor ruling the effect out), with how many would detect ``min_effect`` at
    80% power; or an effect that lies near the size that matters. ``detectable`` is each
    comparison's detectable effect at ``alpha``, by label."""
    counting = [aligned(c.effect, rule) for _, c, p in comparisons if counts(c, p, rule)]
    if counting and not rule.absent:  # (absent: only counts against it leave it open)
        agree = sum(e > 0 for e in counting)
        return (
            f"its comparisons disagree: {agree} count in the claimed direction and "
            f"{len(counting) - agree} against it"
        ), None
    weak = [
        c
        for label, c, _ in comparisons
        if not rules_out(c, rule) and detectable[label] > rule.min_effect
    ]
    if not weak:
        return (
            f"not for want of seeds (each open comparison detects {rule.min_effect:g} "
            "with 80% power): the effect lies near the size that matters"
        ), None
    needed = [seeds_needed(c.se * math.sqrt(c.n_arm), rule.min_effect, alpha) for c in weak]
    if None in needed:
        return "too few seeds, and no feasible number would detect the size that matters", None
    n = max(needed)
    return (
        f"too few seeds: {len(weak)} comparison(s) cannot detect {rule.min_effect:g} with "
        f"80% power; about {n} seeds would"
    ), n
