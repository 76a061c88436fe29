"""The seed notebook's claims about BN, each judged from the runs of its built-in study.

Each claim names its study (``normlab/studies/claims/<study>.toml``), the outcome it is
about, the factors that split it into comparisons, and the verdict rule
(``analysis.verdict``): which sign of the effect the claim predicts and what size
matters. Every comparison sets the BN arm against a baseline (no normalization, or
GroupNorm for the small-batch claim) with all other factors equal; the two arms share
seeds, so the comparison is paired by seed.
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

    def probe(self, probe: str, name: str) -> dict[int, list[float]]:
        """One probe value's measurements by layer (NULLs left out)."""
        out: dict[int, list[float]] = defaultdict(list)
        for row in self.probes:
            if row["probe"] == probe and row["name"] == name and row["value"] is not None:
                out[int(row["layer"])].append(float(row["value"]))
        return out


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


def steps_to(target: float) -> Callable[[RunRecord], float]:
    """Steps until validation accuracy first reaches ``target`` (+inf if never), from
    the evaluations within epochs and at each epoch's end."""

    def measure(run: RunRecord) -> float:
        per_epoch = (TRAIN_POOL - int(run.config["val_size"])) // int(run.config["batch_size"])
        points = [(e["step"], e["val_acc"]) for e in run.evals]
        points += [(e["epoch"] * per_epoch, e["val_acc"]) for e in run.epochs]
        reached = [s for s, acc in points if acc is not None and acc >= target]
        return float(min(reached)) if reached else math.inf

    return measure


@dataclass(frozen=True)
class Claim:
    """One claim of the seed notebook and how normlab judges it."""

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
    # the normalization of the arm and of the baseline it is compared with
    arm: str = "batch"
    baseline: str = "none"


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
            "final test accuracy, BN − GroupNorm (which does not depend on the batch), at "
            "batch sizes 4 and 8 (negative = BN worse)",
            {"": final_test_accuracy},
            Rule(direction=-1, min_effect=0.002),
            by=("batch_size",),
            where=(("batch_size", (2, 4, 8)),),
            baseline="group",
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
            baseline="folded",
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
    )
}


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
    comparisons: list[tuple[str, Comparison, float]]
    # arm -> (runs that diverged, runs): divergence is an outcome, never dropped silently
    diverged: dict[str, tuple[int, int]] = field(default_factory=dict)

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


def _records(store: Store, study: str) -> list[RunRecord]:
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


def judge(store: Store, claim: Claim, study: str) -> ClaimResult:
    """Compare BN with the baseline in every group of ``claim.by`` and apply the rule."""
    arms: dict[str, dict[str, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    groups: dict[tuple, list[RunRecord]] = defaultdict(list)
    diverged: dict[str, list[int]] = {}
    runs = 0
    for run in _records(store, study):
        norm = run.config["norm"]
        if norm not in (claim.arm, claim.baseline) or any(
            run.config[f] not in values for f, values in claim.where
        ):
            continue
        runs += 1
        count = diverged.setdefault(str(norm), [0, 0])
        count[0] += run.status == "diverged"
        count[1] += 1
        factors = (_factor(run.config[f]) for f in claim.by)
        groups[(*factors, norm, int(run.config["seed"]))].append(run)
    for (*values, norm, seed), members in groups.items():
        for name, measure in claim.measures.items():
            if claim.across is None:
                (run,) = members  # without `across`, one run per seed and arm
                value = measure(run)
            else:
                value = measure(members)
            parts = [f"{f}={v}" for f, v in zip(claim.by, values, strict=True)]
            label = ", ".join([*parts, name] if name else parts)
            arms[label][norm][seed] = value
    result = judge_values(claim, arms, runs)
    return replace(result, diverged={arm: (d, n) for arm, (d, n) in diverged.items()})


def judge_values(
    claim: Claim, arms: dict[str, dict[str, dict[int, float]]], runs: int
) -> ClaimResult:
    """The verdict from values already measured: comparison label -> arm ("batch" or
    the baseline's name) -> seed -> value."""
    labelled = []
    for label in sorted(arms):
        bn, base = arms[label][claim.arm], arms[label][claim.baseline]
        seeds = sorted(set(bn) | set(base))
        comparison = compare(
            [bn.get(s, math.nan) for s in seeds],
            [base.get(s, math.nan) for s in seeds],
            paired=True,
            kind=claim.kind,
        )
        labelled.append((label, comparison))
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
    )
