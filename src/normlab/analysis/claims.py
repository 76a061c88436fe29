"""The seed notebook's claims about BN, each judged from the runs of its built-in study.

Claims 1-10 are the seed's; 11 and 12 are parts of claims 3 and 4 that the literature
adds (Yang et al.'s counter-hypothesis, Li et al.'s variance shift). Each claim names
its study (``normlab/studies/claims/<study>.toml``), the outcome it is about, the
factors that split it into comparisons, and the verdict rule (``analysis.verdict``):
which sign of the effect the claim predicts and what size matters. Every comparison
sets an arm (usually BN) against a baseline (no normalization, GroupNorm, ...) with all
other factors equal; the arms share seeds, so the comparison is paired by seed.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from importlib import resources

import numpy as np

from normlab.analysis.stats import Comparison, compare, holm
from normlab.analysis.verdict import Rule, verdict
from normlab.store.db import Store
from normlab.studies.spec import StudySpec, load_study

TRAIN_POOL = 60000  # MNIST and Fashion-MNIST training images before the validation split


@dataclass(frozen=True)
class RunRecord:
    """What the claims read of one run."""

    config: dict[str, object]
    status: str
    epochs: list[dict[str, float]]
    evals: list[dict[str, float]]
    probes: list[dict[str, object]]

    def probe(self, probe: str, name: str, step: int | None = None) -> dict[int, list[float]]:
        """One probe value's measurements by layer (NULLs left out), in step order; at
        ``step`` only, if given."""
        out: dict[int, list[float]] = defaultdict(list)
        for row in sorted(self.probes, key=lambda r: r["step"]):
            if (
                row["probe"] == probe
                and row["name"] == name
                and row["value"] is not None
                and (step is None or row["step"] == step)
            ):
                out[int(row["layer"])].append(float(row["value"]))
        return out

    def last(self, probe: str, name: str) -> float:
        """The mean over layers of a probe value's last measurement (NaN if none)."""
        steps = [r["step"] for r in self.probes if r["probe"] == probe and r["name"] == name]
        if not steps:
            return math.nan
        values = [v for vs in self.probe(probe, name, max(steps)).values() for v in vs]
        return float(np.mean(values)) if values else math.nan


def final_test_accuracy(run: RunRecord) -> float:
    """Test accuracy after the last epoch (NaN for a run that did not finish)."""
    return run.epochs[-1]["test_acc"] if run.status == "done" and run.epochs else math.nan


def train_test_gap(run: RunRecord) -> float:
    """Last epoch's training accuracy (train mode, epoch mean) minus test accuracy."""
    if run.status != "done" or not run.epochs:
        return math.nan
    return run.epochs[-1]["train_acc"] - run.epochs[-1]["test_acc"]


def largest_usable_lr(tolerance: float) -> Callable[[list[RunRecord]], float]:
    """log10 of the largest learning rate whose run finished within ``tolerance`` of the
    best final validation accuracy over the rates tried (diverged runs never qualify);
    -inf when none finished."""

    def measure(runs: list[RunRecord]) -> float:
        finished = [(float(r.config["lr"]), r.epochs[-1]["val_acc"]) for r in runs
                    if r.status == "done" and r.epochs]  # fmt: skip
        if not finished:
            return -math.inf
        best = max(acc for _, acc in finished)
        return math.log10(max(lr for lr, acc in finished if acc >= best - tolerance))

    return measure


def spread_of_final_accuracy(runs: list[RunRecord]) -> float:
    """Standard deviation of final test accuracy over the runs (a diverged or failed run
    counts as chance level, 0.1: not converging is the worst dependence on the init)."""
    accs = [r.epochs[-1]["test_acc"] if r.status == "done" and r.epochs else 0.1 for r in runs]
    return float(np.std(accs, ddof=1)) if len(accs) > 1 else math.nan


def covariate_shift(run: RunRecord) -> float:
    """Mean of 1 − cos(G, G') over the measurements and the layers that have layers
    before them (Santurkar et al.'s ICS, made independent of the gradients' scale)."""
    per_layer = run.probe("ics", "cosine")
    values = [1 - c for layer, cs in per_layer.items() if layer > 0 for c in cs]
    return float(np.mean(values)) if values and run.status == "done" else math.nan


def gradient_imbalance(run: RunRecord) -> float:
    """Mean over the measurements of |log10(‖∇W_first‖ / ‖∇W_last hidden‖)|: 0 when the
    first and the last hidden layer get gradients of equal size, 1 for a factor of 10."""
    norms = run.probe("layers", "grad_norm")
    hidden = sorted(norms)[:-1]  # the output layer aside
    if run.status != "done" or len(hidden) < 2:
        return math.nan
    pairs = zip(norms[hidden[0]], norms[hidden[-1]], strict=True)
    return float(np.mean([abs(math.log10(a / b)) for a, b in pairs if a > 0 and b > 0]))


def init_gradient_growth(runs: list[RunRecord]) -> float:
    """How fast, over depth, the first hidden layer's gradient outgrows the last one's at
    initialization: the least-squares slope of log10(‖∇W_first‖ / ‖∇W_last hidden‖) of
    the first step against the number of hidden layers (decades per layer; NaN with
    fewer than two depths). Yang et al. (2019) predict a positive slope for BN."""
    points = []
    for run in runs:
        norms = run.probe("layers", "grad_norm", step=1)
        hidden = sorted(norms)[:-1]  # the output layer aside
        if len(hidden) >= 2 and norms[hidden[0]] and norms[hidden[-1]]:
            first, last = norms[hidden[0]][0], norms[hidden[-1]][0]
            if first > 0 and last > 0:
                points.append((len(hidden), math.log10(first / last)))
    if len({depth for depth, _ in points}) < 2:
        return math.nan
    depth, ratio = np.array(points).T
    return float(np.polyfit(depth, ratio, 1)[0])


def bn_probe_difference(first: str, second: str) -> Callable[[RunRecord], float]:
    """The last ``bn`` probe measurement's ``first`` minus its ``second`` (e.g. accuracy
    with running statistics minus accuracy with batch statistics)."""

    def measure(run: RunRecord) -> float:
        return run.last("bn", first) - run.last("bn", second)

    return measure


def variance_shift(run: RunRecord) -> float:
    """Li et al.'s variance shift at the last measurement, mean over the BN layers (1:
    the running variances match inference)."""
    return run.last("bn", "variance_shift")


def accuracy_curve(run: RunRecord) -> dict[int, float]:
    """Validation accuracy by step, in step order: the evaluations within epochs and at
    each epoch's end (missing or non-finite values left out)."""
    per_epoch = (TRAIN_POOL - int(run.config["val_size"])) // int(run.config["batch_size"])
    curve = {int(e["step"]): e["val_acc"] for e in run.evals}
    curve.update({int(e["epoch"]) * per_epoch: e["val_acc"] for e in run.epochs})
    return {s: a for s, a in sorted(curve.items()) if a is not None and math.isfinite(a)}


def steps_to(target: float) -> Callable[[RunRecord], float]:
    """Steps until validation accuracy first reaches ``target`` (+inf if never), from
    the evaluations within epochs and at each epoch's end."""

    def measure(run: RunRecord) -> float:
        reached = [s for s, acc in accuracy_curve(run).items() if acc >= target]
        return float(min(reached)) if reached else math.inf

    return measure


@dataclass(frozen=True)
class Claim:
    """One claim and how normlab judges it."""

    id: int
    claim: str
    study: str | None  # None: measured live (``studies.inference``), not from a study
    outcome: str
    # one or more measures of the outcome (e.g. one per target), each compared apart
    measures: dict[str, Callable[..., float]]
    rule: Rule
    by: tuple[str, ...]
    kind: str = "continuous"
    # the factor values the claim is about; runs outside them are context only
    where: tuple[tuple[str, tuple[object, ...]], ...] = ()
    # a factor whose values each seed's measure takes together (the measures then get
    # the list of that seed's runs over it), e.g. the learning rate for "usable LRs"
    across: str | None = None
    # the factor that tells the arms apart, the arm's value of it, and the baselines the
    # verdict compares the arm with
    factor: str = "norm"
    arm: str = "batch"
    baselines: tuple[str, ...] = ("none",)
    # Comparisons shown beside the verdict but outside it (and outside its Holm
    # correction): the arm against further baselines, and further measures of the arm
    # against the first baseline.
    context: tuple[str, ...] = ()
    context_measures: dict[str, Callable[..., float]] = field(default_factory=dict)
    # the seed claim this one is a part of (``--only`` with that number includes it)
    part_of: int | None = None


CLAIMS: dict[int, Claim] = {
    c.id: c
    for c in (
        Claim(
            1,
            "BN makes training converge faster",
            "01-faster-convergence",
            "median steps to a validation accuracy (BN − none; negative = BN faster)",
            {f"target={t}": steps_to(t) for t in (0.93, 0.95)},
            Rule(direction=-1, min_effect=50),
            by=("inputs", "batch_size"),
            kind="ranked",
        ),
        Claim(
            2,
            "BN allows higher learning rates",
            "02-higher-learning-rates",
            "log10 of the largest learning rate within 1 point of the best validation "
            "accuracy, without diverging (BN − none; positive = BN tolerates higher)",
            {"": largest_usable_lr(0.01)},
            Rule(direction=1, min_effect=0.4),
            by=("optimizer",),
            across="lr",
        ),
        Claim(
            3,
            "BN stabilizes gradients and prevents vanishing gradients in deep networks",
            "03-deep-gradients",
            "|log10| of the first / last hidden layer's gradient-norm ratio, mean over "
            "training (BN − none; negative = more even gradients)",
            {"": gradient_imbalance},
            Rule(direction=-1, min_effect=0.1),
            by=("activation", "hidden"),
            # deep: 8 hidden layers or more (the study's shallower nets serve claim 11)
            where=(("hidden", tuple(f"{d}×128" for d in range(8, 21))),),
        ),
        Claim(
            4,
            "BN has a regularizing effect",
            "04-regularization",
            "train − test accuracy gap without dropout (BN − none; negative = smaller gap)",
            {"": train_test_gap},
            Rule(direction=-1, min_effect=0.002),
            by=("batch_size",),
        ),
        Claim(
            5,
            "BN makes training less dependent on the initialization",
            "05-initialization",
            "standard deviation of final test accuracy over init scales ×0.1 to ×10 "
            "(BN − none; negative = less dependent)",
            {"": spread_of_final_accuracy},
            Rule(direction=-1, min_effect=0.005),
            by=("init",),
            across="init_scale",
        ),
        Claim(
            6,
            "BN makes training unstable at very small batch sizes",
            "06-small-batches",
            "final test accuracy, BN − GroupNorm and BN − LayerNorm (which do not depend "
            "on the batch), at batch sizes 2 to 8 (negative = BN worse)",
            {"": final_test_accuracy},
            Rule(direction=-1, min_effect=0.002),
            by=("batch_size",),
            where=(("batch_size", (2, 4, 8)),),
            baselines=("group", "layer"),
            context=("batch_renorm", "ghost_batch", "none"),
            context_measures={
                "train/eval discrepancy (running − batch statistics accuracy)": (
                    bn_probe_difference("running_acc", "batch_acc")
                ),
            },
        ),
        Claim(
            7,
            "BN adds computational overhead at inference",
            None,
            "log of the latency ratio, BN with running statistics vs the same network "
            "with BN folded into its dense layer, per inference batch (positive = BN "
            "slower; folding's outputs equal BN's to float rounding)",
            {},
            Rule(direction=1, min_effect=0.05),
            by=("batch",),
            baselines=("folded",),
        ),
        Claim(
            8,
            "BN reduces internal covariate shift",
            "08-internal-covariate-shift",
            "1 − cos(G, G') of a layer's gradient before and after the earlier layers' "
            "update, mean over layers and training (BN − none; negative = less shift)",
            {"": covariate_shift},
            Rule(direction=-1, min_effect=0.01),
            by=("batch_size",),
        ),
        Claim(
            10,
            "Ioffe & Szegedy's MNIST experiment: BN trains faster to a higher accuracy",
            "10-ioffe-szegedy-mnist",
            "test accuracy of 3×100 sigmoid networks, batch 60, SGD (BN − none)",
            {"": final_test_accuracy},
            Rule(direction=1, min_effect=0.005),
            by=("batch_size",),
        ),
        Claim(
            9,
            "BN may not work well on data that are already well normalized",
            "09-normalization-conflicts",
            "final test accuracy (BN − none) with scaled or standardized inputs",
            {"": final_test_accuracy},
            Rule(direction=-1, min_effect=0.002),
            by=("inputs",),
            where=(("inputs", ("scaled", "standardized")),),
        ),
        Claim(
            11,
            "BN networks' gradients grow with depth at initialization (Yang et al. 2019; "
            "counter-hypothesis to 3)",
            "03-deep-gradients",
            "slope over depth of log10(first / last hidden layer's gradient norm) at the "
            "first step, decades per layer (BN − none; positive = BN's gradients grow "
            "toward the input)",
            {"": init_gradient_growth},
            Rule(direction=1, min_effect=0.02),
            by=("activation",),
            across="hidden",
            part_of=3,
        ),
        Claim(
            12,
            "Dropout before BN hurts through a variance shift (Li et al. 2019; part 2 of 4)",
            "12-dropout-before-bn",
            "BN networks with dropout right before the norm vs at the block's end: final "
            "test accuracy, and accuracy with the running statistics minus after precise "
            "BN recomputes them without dropout (before − after; negative = worse)",
            {
                "test accuracy": final_test_accuracy,
                "running − precise BN accuracy": bn_probe_difference("running_acc", "precise_acc"),
            },
            Rule(direction=-1, min_effect=0.002),
            by=("batch_size", "dropout"),
            factor="dropout_position",
            arm="before",
            baselines=("after",),
            context_measures={"variance shift (1 = none)": variance_shift},
            part_of=4,
        ),
    )
}


def selected(numbers: list[int]) -> list[int]:
    """The claims ``numbers`` name with their parts (``--only 4`` is 4 and 12), each part
    right after its claim; a ValueError names the first unknown number."""
    for n in numbers:
        if n not in CLAIMS:
            raise ValueError(f"no claim {n} (claims: {', '.join(map(str, sorted(CLAIMS)))})")
    chosen = [c for c in CLAIMS.values() if c.id in numbers or c.part_of in numbers]
    return [c.id for c in sorted(chosen, key=lambda c: (c.part_of or c.id, c.id))]


def claim_study(claim: Claim, budget: str) -> StudySpec:
    """The built-in study of ``claim`` at ``budget`` (quick, standard or full)."""
    if claim.study is None:
        raise ValueError(f"claim {claim.id} is measured live, it has no study")
    source = resources.files("normlab.studies.claims") / f"{claim.study}.toml"
    with resources.as_file(source) as path:
        return load_study(path).with_budget(budget)


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
        }
        return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in out.items()}


def records(store: Store, study: str) -> list[RunRecord]:
    tables: dict[str, dict[str, list[dict]]] = {}
    for table in ("epochs", "evals", "probes"):
        tables[table] = defaultdict(list)
        for row in getattr(store, table)(study):
            tables[table][row["run_id"]].append(dict(row))
    return [
        RunRecord(
            json.loads(r["config"]),
            r["status"],
            *(tables[t][r["id"]] for t in ("epochs", "evals", "probes")),
        )
        for r in store.runs(study)
    ]


def _factor(value: object) -> object:
    # hidden widths are lists: a hashable key, shown as depth × width when uniform
    if isinstance(value, list):
        return f"{len(value)}×{value[0]}" if len(set(value)) == 1 else "-".join(map(str, value))
    return value


# comparison label -> arm value -> seed -> measured value
Arms = dict[str, dict[str, dict[int, float]]]


def judge(store: Store, claim: Claim, study: str) -> ClaimResult:
    """Compare the arm with each baseline in every group of ``claim.by``, apply the rule."""
    values = (claim.arm, *claim.baselines, *claim.context)
    groups: dict[tuple, list[RunRecord]] = defaultdict(list)
    diverged: dict[str, list[int]] = {}
    runs = 0
    for run in records(store, study):
        arm = str(run.config[claim.factor])
        if arm not in values or any(
            _factor(run.config[f]) not in allowed for f, allowed in claim.where
        ):
            continue
        runs += 1
        count = diverged.setdefault(arm, [0, 0])
        count[0] += run.status == "diverged"
        count[1] += 1
        factors = (_factor(run.config[f]) for f in claim.by)
        groups[(*factors, arm, int(run.config["seed"]))].append(run)

    def measured(measures: dict[str, Callable[..., float]]) -> Arms:
        arms: Arms = defaultdict(lambda: defaultdict(dict))
        for (*by, arm, seed), members in groups.items():
            for name, measure in measures.items():
                if claim.across is None:
                    (run,) = members  # without `across`, one run per seed and arm
                    value = measure(run)
                else:
                    value = measure(members)
                parts = [f"{f}={v}" for f, v in zip(claim.by, by, strict=True)]
                label = ", ".join([*parts, name] if name else parts)
                arms[label][arm][seed] = value
        return arms

    result = judge_values(claim, measured(claim.measures), runs, measured(claim.context_measures))
    return replace(result, diverged={arm: (d, n) for arm, (d, n) in diverged.items()})


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
    # equals, one with a finite effect, which says more than "never reached").
    ranked = sorted(
        comparisons, key=lambda t: (math.isnan(t[2]), t[2], not math.isfinite(t[1].effect))
    )
    _, lead, p = ranked[0] if ranked else ("", None, math.nan)
    return ClaimResult(
        id=claim.id,
        claim=claim.claim,
        verdict=result,
        outcome=claim.outcome,
        effect=lead.effect if lead else math.nan,
        ci_low=lead.ci_low if lead else math.nan,
        ci_high=lead.ci_high if lead else math.nan,
        p_corrected=p,
        runs=runs,
        comparisons=comparisons,
        context=_compare_all(claim, arms, claim.context)
        + _compare_all(claim, context or {}, claim.baselines[:1]),
    )
