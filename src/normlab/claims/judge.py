"""From a claim's stored runs to its verdict: group, measure, compare, correct, decide."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from normlab.analysis.power import detectable_for, seeds_for
from normlab.analysis.records import RunRecord, records
from normlab.analysis.regime import Regime, regime
from normlab.analysis.stats import Comparison, compare, holm
from normlab.analysis.tuning import chosen_note, select_tuned
from normlab.analysis.verdict import (
    Basis,
    Reading,
    Rule,
    Verdict,
    aligned,
    decide,
)
from normlab.claims.claim import Claim, ClaimError
from normlab.spec.config import DEFAULT_LR
from normlab.spec.settings import SEED, Setting
from normlab.store.db import Store
from normlab.types import Status


@dataclass(frozen=True)
class Judged:
    """One comparison of a claim, labelled by data: its group (the factors' values and
    the measure, "" for a claim without), the baseline the arm is set against, the
    comparison, its Holm-corrected p and its reading (context comparisons: p
    uncorrected, no reading)."""

    group: str
    baseline: str
    comparison: Comparison
    p_corrected: float = math.nan
    reading: Reading | None = None
    named: bool = False  # whether the label names the baseline (the claim has several)

    @property
    def label(self) -> str:
        """The comparison as a table shows it: its group, and "vs baseline" when the
        claim has several."""
        vs = f"vs {self.baseline}" if self.named else ""
        return ", ".join(t for t in (self.group, vs) if t)


@dataclass(frozen=True)
class Look:
    """Where a sequential design's verdict stood at one look: the seeds per arm, the
    level the look was judged at, and the verdict with its leading effect."""

    seeds: int
    level: float
    verdict: Verdict
    effect: float
    ci_low: float
    ci_high: float
    p_corrected: float

    def as_json(self) -> dict[str, object]:
        """The look as ``claims --json`` lists it (NaN and infinities become null)."""
        return {k: v if not isinstance(v, float) or math.isfinite(v) else None
                for k, v in self.__dict__.items()}  # fmt: skip


@dataclass(frozen=True)
class ClaimResult:
    """A claim's verdict with the comparison that carries most weight, and all of them."""

    id: int
    claim: str
    verdict: Verdict
    outcome: str
    effect: float
    ci_low: float
    ci_high: float
    p_corrected: float
    runs: int
    # every comparison the verdict rests on, with its Holm-corrected p and reading
    comparisons: list[Judged]
    # arm -> (runs that diverged, runs): divergence is an outcome, never dropped silently
    diverged: dict[str, tuple[int, int]] = field(default_factory=dict)
    # comparisons shown beside the verdict, not part of it (p uncorrected)
    context: list[Judged] = field(default_factory=list)
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
    # what the verdict rests on: an effect the claimed way, one the other way, or an
    # effect shown smaller than the size that matters ("equivalence")
    basis: Basis = Basis.NONE
    dropped: int = 0  # values left out of the comparisons (seeds without a value)
    # a sequential design's (``--budget auto``): the seeds per arm the verdict rests on,
    # why it stopped ("decided" or "cap"), and the verdict at each look so far
    seeds_used: int | None = None
    stopped: str = ""
    looks: list[Look] = field(default_factory=list)

    @property
    def leading(self) -> Judged | None:
        """The comparison whose effect, interval and p the verdict shows."""
        return next((j for j in self.comparisons if j.label == self.lead), None)

    def as_json(self) -> dict[str, object]:
        """The keys of ``normlab claims --json`` (NaN becomes null)."""
        out: dict[str, object] = {
            "id": self.id,
            "claim": self.claim,
            "verdict": self.verdict,
            "basis": self.basis,
            "effect": self.effect,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "p_corrected": self.p_corrected,
            "runs": self.runs,
            "detectable_effect": self.detectable.get(self.lead, math.nan),
            "seeds_needed": self.seeds_needed,
            "regime": self.regime.as_json() if self.regime else None,
            "setting": self.setting,
            "dropped": self.dropped,
        }
        if self.verdict == Verdict.NOT_APPLICABLE:
            out["reason"] = self.notes[0]
        if self.stopped:
            out |= {"seeds_used": self.seeds_used, "stopped": self.stopped,
                    "looks": [look.as_json() for look in self.looks]}  # fmt: skip
        return {k: None if isinstance(v, float) and not math.isfinite(v) else v
                for k, v in out.items()}  # fmt: skip


def not_applicable(claim: Claim, setting: Setting) -> ClaimResult:
    """The result of a claim that does not apply to ``setting``, saying why."""
    nan = math.nan
    return ClaimResult(claim.id, claim.claim, Verdict.NOT_APPLICABLE, claim.outcome, nan, nan, nan,
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
    """``judge`` on the runs of the claim's study, already read. A tuned claim judges
    each arm's seed by its run best on validation, and shows the comparison at the
    default learning rate beside the verdict."""
    runs = [r for r in study_runs if claim.where is None or claim.where(r.config)]
    wanted = (claim.arm, *claim.baselines, *claim.context)
    runs = [r for r in runs if claim.arm_of(r.config) in wanted]
    kept = select_tuned(runs, claim.tune)
    groups, diverged = _grouped(claim, kept)
    setting = Setting.of(runs[0].config.model, runs[0].config.dataset) if runs else SEED
    values = _measured(claim, groups, claim.measures_in(setting))
    context = _measured(claim, groups, claim.context_measures)
    result = judge_values(claim, values, len(runs), context)
    if claim.tune:
        at_default = [r for r in runs if r.config.lr == DEFAULT_LR]
        fixed = _measured(claim, _grouped(claim, at_default)[0], claim.measures_in(setting))
        fixed = {_at_default(label): arms for label, arms in fixed.items()}
        result.context.extend(_compare_all(claim, fixed, claim.baselines))
        result.notes.append(chosen_note(kept, claim.tune, lambda r: claim.arm_of(r.config)))
    judged = [r for r in runs if claim.arm_of(r.config) in (claim.arm, *claim.baselines)]
    where = setting.label if runs else ""
    result = replace(result, regime=regime(judged, claim.tune), setting=where)
    result.diverged.update({arm: (d, n) for arm, (d, n) in diverged.items()})
    if claim.note is not None:
        result.notes.append(claim.note(runs))
    return result


def _at_default(label: str) -> str:
    """A comparison's label at the default learning rate (a tuned claim's context)."""
    return ", ".join(t for t in (f"fixed lr {DEFAULT_LR:g}", label) if t)


def _grouped(
    claim: Claim, runs: list[RunRecord]
) -> tuple[dict[tuple, list[RunRecord]], dict[str, tuple[int, int]]]:
    """``runs`` by the claim's groups, arm and seed; and per arm, how many of them
    diverged out of how many."""
    groups: dict[tuple, list[RunRecord]] = defaultdict(list)
    diverged: dict[str, tuple[int, int]] = {}
    for run in runs:
        arm = claim.arm_of(run.config)
        d, n = diverged.get(arm, (0, 0))
        diverged[arm] = (d + (run.status == Status.DIVERGED), n + 1)
        factors = (factor_value(getattr(run.config, f)) for f in claim.by)
        groups[(*factors, arm, run.config.seed)].append(run)
    return groups, diverged


def _measured(
    claim: Claim, groups: dict[tuple, list[RunRecord]], measures: dict[str, Callable[..., float]]
) -> Arms:
    """Each measure of each group's runs, as comparison label -> arm -> seed -> value."""
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


def _missing(arms: Arms) -> tuple[list[str], int]:
    """A sentence for each comparison group with seeds that have no value, and how many
    values that leaves out."""
    notes, count = [], 0
    for label, by_arm in sorted(arms.items()):
        for arm, seeds in by_arm.items():
            none = sorted(s for s, v in seeds.items() if math.isnan(v))
            count += len(none)
            if none:
                where = f"{label}, " if label else ""
                notes.append(
                    f"{where}{arm}: seed(s) {', '.join(map(str, none))} without a value "
                    "(diverged, failed or not finished), left out of the comparison"
                )
    return notes, count


def _compare_all(claim: Claim, arms: Arms, baselines: tuple[str, ...]) -> list[Judged]:
    """The arm against each baseline it has runs beside, in every group (unjudged)."""
    named = len(claim.baselines) + len(claim.context) > 1
    out = []
    for group in sorted(arms):
        arm = arms[group].get(claim.arm, {})
        for baseline in baselines:
            base = arms[group].get(baseline)
            if not base or not arm:
                continue
            seeds = sorted(set(arm) | set(base))
            comparison = compare(
                [arm.get(s, math.nan) for s in seeds],
                [base.get(s, math.nan) for s in seeds],
                paired=True,
                kind=claim.kind,
                confidence=1.0 - claim.rule.alpha,  # the interval the rule reads
            )
            out.append(Judged(group, baseline, comparison, named=named))
    return out


def judge_values(claim: Claim, arms: Arms, runs: int, context: Arms | None = None) -> ClaimResult:
    """The verdict from values already measured (comparison group -> arm value -> seed ->
    value); ``context`` holds the context measures' values, laid out the same way."""
    unjudged = _compare_all(claim, arms, claim.baselines)
    corrected = holm([j.comparison.p for j in unjudged])
    decision = decide([j.comparison for j in unjudged], corrected, claim.rule)
    comparisons = [
        replace(j, p_corrected=p, reading=r)
        for j, p, r in zip(unjudged, corrected, decision.readings, strict=True)
    ]
    lead = _lead(comparisons, claim.rule)
    # the level the smallest of the family's Holm-corrected p-values must beat
    alpha = claim.rule.alpha / max(1, sum(not math.isnan(j.p_corrected) for j in comparisons))
    detectable = {j.label: detectable_for(j.comparison, alpha) for j in comparisons}
    power, seeds = "", None
    if decision.verdict == Verdict.INCONCLUSIVE:
        power, seeds = power_sentence(comparisons, detectable, claim.rule, alpha)
    elif lead:
        seeds = seeds_for(lead.comparison, claim.rule.min_effect, alpha)
    c = lead.comparison if lead else None
    missing, dropped = _missing(arms)
    return ClaimResult(
        id=claim.id,
        claim=claim.claim,
        title=claim.title,
        verdict=decision.verdict,
        basis=decision.basis,
        outcome=claim.outcome,
        effect=c.effect if c else math.nan,
        ci_low=c.ci_low if c else math.nan,
        ci_high=c.ci_high if c else math.nan,
        p_corrected=lead.p_corrected if lead else math.nan,
        runs=runs,
        lead=lead.label if lead else "",
        detectable=detectable,
        seeds_needed=seeds,
        power=power,
        comparisons=comparisons,
        values={
            g: {a: dict(by_seed) for a, by_seed in by_arm.items()} for g, by_arm in arms.items()
        },
        context=_compare_all(claim, arms, claim.context)
        + _compare_all(claim, context or {}, claim.baselines[:1]),
        notes=missing,
        dropped=dropped,
    )


def _lead(comparisons: list[Judged], rule: Rule) -> Judged | None:
    """The comparison the verdict leans on most: the smallest corrected p (among equals,
    one with a finite effect, which says more than "never reached"); for a verdict of
    equivalence or a claim of absence, the one whose interval reaches furthest the way
    the claim looks (the one nearest to deciding otherwise)."""
    if not comparisons:
        return None
    if rule.absent or all(j.reading in (Reading.NEGLIGIBLE, Reading.AGAINST)
                          for j in comparisons):  # fmt: skip
        return max(comparisons, key=lambda j: _reach(j.comparison, rule))
    return min(
        comparisons,
        key=lambda j: (
            math.isnan(j.p_corrected),
            j.p_corrected,
            not math.isfinite(j.comparison.effect),
        ),
    )


def _reach(c: Comparison, rule: Rule) -> float:
    """How far a comparison's interval reaches in the rule's direction (−∞ without one)."""
    end = max(aligned(c.ci_low, rule), aligned(c.ci_high, rule))
    return end if not math.isnan(end) else -math.inf


def power_sentence(
    comparisons: list[Judged],
    detectable: dict[str, float],
    rule: Rule,
    alpha: float,
) -> tuple[str, int | None]:
    """Why an inconclusive verdict is inconclusive, and the seeds that would settle it:
    comparisons that disagree; too few seeds for the comparisons left open (neither
    showing an effect nor ruling one that matters out), with how many would detect
    ``min_effect`` at 80% power; or an effect that lies near the size that matters.
    ``detectable`` is each comparison's detectable effect at ``alpha``, by label."""
    shown = [j.reading for j in comparisons if j.reading in (Reading.FOR, Reading.AGAINST)]
    if Reading.FOR in shown and Reading.AGAINST in shown and not rule.absent:
        agree = shown.count(Reading.FOR)
        return (
            f"its comparisons disagree: {agree} show an effect the claimed way and "
            f"{len(shown) - agree} the other way"
        ), None
    weak = [
        j.comparison
        for j in comparisons
        if j.reading == Reading.OPEN and not detectable[j.label] <= rule.min_effect
    ]
    if not weak:
        return (
            f"not for want of seeds (each open comparison detects {rule.min_effect:g} "
            "with 80% power): the effect lies near the size that matters"
        ), None
    needed = [seeds_for(c, rule.min_effect, alpha) for c in weak]
    if None in needed:
        return "too few seeds, and no feasible number would detect the size that matters", None
    n = max(n for n in needed if n is not None)
    return (
        f"too few seeds: {len(weak)} comparison(s) cannot detect {rule.min_effect:g} with "
        f"80% power; about {n} seeds would"
    ), n
