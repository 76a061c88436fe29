"""The figures that show the claims' evidence, built from a study's stored runs.

A claim names its figure (``Claim.evidence``, e.g. ``"normlab.report.evidence:NOISE"``)
and the claims page loads it by that name: a new claim declares a figure of one of the
common shapes (``claim_figures.FactorFigure``) in a module of its own, or names one of
these. A builder shows every run of the claim's study (the verdict may use a subset,
e.g. the deep networks only; the comparisons table says which).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable

import numpy as np

from normlab.analysis.records import RunRecord, accuracy_curve
from normlab.claims import measures
from normlab.claims.stored import StoredClaim
from normlab.report import plots
from normlab.report.claim_figures import (
    FactorFigure,
    by_factor,
    final,
    grouped,
    over_training,
    target_accuracies,
    varied_fields,
)
from normlab.report.style import Colors, arm_name
from normlab.report.views import Axis, FigureView, Mark, Panel, Trace

Builder = Callable[[StoredClaim, Colors], list[FigureView]]


def convergence(sc: StoredClaim, colors: Colors) -> list[FigureView]:
    targets = target_accuracies(sc)
    marks = [Mark("y", t, f"target {t:g}") for t in targets]
    return [
        over_training(
            sc,
            colors,
            "Validation accuracy over training",
            accuracy_curve,
            "validation accuracy",
            panels=("inputs", "batch_size"),
            marks=marks,
        )
    ]


def learning_rates(sc: StoredClaim, colors: Colors) -> list[FigureView]:
    usable = sc.claim.measures[""]

    def marks(runs: list[RunRecord]) -> list[Mark]:
        out = []
        for arm, members in grouped(runs, lambda c: c.norm).items():
            logs = [usable(seed) for seed in grouped(members, lambda c: str(c.seed)).values()]
            logs = [v for v in logs if math.isfinite(v)]
            if logs:
                at = 10 ** float(np.mean(logs))
                out.append(Mark("x", at, f"{arm_name(arm)}: largest usable", colors(arm)))
        return out

    return [
        by_factor(
            sc,
            colors,
            "Final validation accuracy against learning rate",
            "lr",
            [final("val_acc")],
            panels=("optimizer",),
            log_x=True,
            x_title="learning rate",
            marks=marks,
        )
    ]


def latency(sc: StoredClaim, colors: Colors) -> list[FigureView]:
    factors = varied_fields(sc)
    names = {r.name for run in sc.shown for r in run.probes}
    panels = []
    for batch in sorted(n.removeprefix("latency_bn_b") for n in names if "latency_bn_b" in n):
        traces: list[Trace] = []
        for label, form in (("BN", "bn"), ("BN folded", "folded")):

            def value(run: RunRecord, probe: str = f"latency_{form}_b{batch}") -> float:
                return run.last("inference", probe) * 1e6

            traces += plots.factor_traces(
                label, colors(label), sc.shown, lambda r, k=label: k, value, factors,
                "µs per forward pass", mode="bar",
            )  # fmt: skip
        panels.append(
            Panel(f"inference batch {batch}", Axis("model"), Axis("µs per forward"), traces)
        )
    return [
        FigureView(
            "c7",
            "Latency of one forward pass: BN vs BN folded",
            panels,
            columns=2,
            caption="median of 200 timed passes per run; bars: mean "
            "over runs with its 95% interval; the folded model is the network "
            "without BN layers (its dense layers absorb them)",
        )
    ]


def _shift(run: RunRecord) -> dict[float, float]:
    by_step: dict[int, list[float]] = defaultdict(list)
    for r in run.probes:
        if r.probe == "ics" and r.name == "cosine" and r.layer > 0 and r.value is not None:
            by_step[r.step].append(1 - float(r.value))
    return {s: float(np.mean(v)) for s, v in sorted(by_step.items())}


def covariate_shift(sc: StoredClaim, colors: Colors) -> list[FigureView]:
    return [
        over_training(
            sc,
            colors,
            "Internal covariate shift over training",
            _shift,
            "1 − cos(G, G′), mean over layers",
            panels=("batch_size",),
        )
    ]


def ioffe_szegedy(sc: StoredClaim, colors: Colors) -> list[FigureView]:
    fig = over_training(
        sc, colors, "Ioffe & Szegedy's Figure 1", accuracy_curve, "validation accuracy"
    )
    first = fig.panels[0]
    panels = [Panel("(a) validation accuracy", first.x, first.y, first.traces)]
    for letter, norm in zip("bc", ("none", "batch"), strict=True):
        runs = [r for r in sc.shown if r.config.norm == norm and r.probes]
        if not runs:
            continue
        run = min(runs, key=lambda r: r.config.seed)
        try:
            unit, steps, values = percentile_curves(run)
        except ValueError:
            continue
        traces = [
            Trace(
                f"{arm_name(norm)} p{q}",
                steps.tolist(),
                values[:, i].tolist(),
                colors(norm),
                group=f"{norm} percentiles",
                legend=q == 50,
                width=2.2 if q == 50 else 1.2,
                dash="solid" if q == 50 else "dot",
                hover=f"run {run.run_id}<br>seed {run.config.seed}<br>p{q} of unit {unit}",
            )
            for i, q in enumerate(PERCENTILES)
        ]
        panels.append(
            Panel(
                f"({letter}) {arm_name(norm)}: unit {unit}, 15/50/85th pct",
                Axis("optimizer step"),
                Axis("sigmoid input"),
                traces,
            )
        )
    return [
        FigureView(
            fig.key,
            fig.title,
            panels,
            columns=3,
            caption="(a) mean over seeds with the band of seeds; (b, c) the 15th, "
            "50th and 85th percentiles over 512 validation images of the input of "
            "one sigmoid unit of the last hidden layer, one seed",
        )
    ]


PERCENTILES = (15, 50, 85)


def percentile_curves(run: RunRecord) -> tuple[int, np.ndarray, np.ndarray]:
    """Ioffe & Szegedy's Figure 1 (b, c) data: the middle fixed unit of the last hidden
    layer, and the steps and values [steps, 3] of its 15/50/85th input percentiles."""
    quantiles = [r for r in run.probes if r.probe == "activations" and r.name == "quantile"]
    units = sorted({r.unit for r in quantiles})
    if not units:
        raise ValueError("the runs have no activation percentiles (probe 'activations')")
    unit = units[len(units) // 2]
    last = max(r.layer for r in run.probes if r.probe == "activations")
    by_step: dict[int, dict[int, float]] = defaultdict(dict)
    for r in quantiles:
        q = round(r.quantile * 100)
        if r.layer == last and r.unit == unit and r.value is not None and q in PERCENTILES:
            by_step[r.step][q] = float(r.value)
    steps = sorted(s for s, v in by_step.items() if len(v) == len(PERCENTILES))
    values = np.array([[by_step[s][q] for q in PERCENTILES] for s in steps])
    return unit, np.array(steps), values


def convergence_by_batch(sc: StoredClaim, colors: Colors) -> list[FigureView]:
    """Validation accuracy against optimizer steps (top row) and against epochs (bottom
    row), a panel per norm, a series per batch size."""
    targets = target_accuracies(sc)
    marks = [Mark("y", t, f"target {t:g}") for t in targets]

    def per_epoch(run: RunRecord) -> dict[float, float]:
        return {s / run.steps_per_epoch: a for s, a in accuracy_curve(run).items()}

    rows = [
        over_training(sc, colors, "", curve, "validation accuracy", panels=("norm",),
                      marks=marks, x_title=x)
        for curve, x in ((accuracy_curve, "optimizer step"), (per_epoch, "epoch"))
    ]  # fmt: skip
    return [
        FigureView(
            f"c{sc.claim.id}",
            "Validation accuracy against optimizer steps and against epochs, by batch size",
            [*rows[0].panels, *rows[1].panels],
            columns=len(rows[0].panels),
            caption=rows[0].caption,
        )
    ]


BATCH_SIZE = {"x": "batch_size", "log_x": True, "x_title": "batch size"}
NOISE = FactorFigure(
    "Gradient noise of one step against batch size",
    values=[("log10 gradient noise (tr Σ_B / |G|²)", measures.gradient_noise)],
    series="norm",
    **BATCH_SIZE,
)
GAMMA = FactorFigure(
    "Final test accuracy against BN's initial γ, per momentum and ε",
    "norm_gain",
    [final("test_acc")],
    panels=("bn_eps",),
    log_x=True,
    x_title="initial γ (β starts at 0)",
    series="bn_momentum",
)
COVERAGE = [
    ("KL to uniform (nats)", measures.mode_kl),
    ("modes missed (fraction)", measures.modes_missed),
]
DEPTH = {"x": "hidden", "panels": ("activation",), "x_title": "hidden layers × width"}

GRADIENT_IMBALANCE: Builder = FactorFigure(
    "Gradient imbalance against depth",
    values=[("|log10 first/last hidden grad norm|", measures.gradient_imbalance)],
    **DEPTH,
)
GAP_BY_BATCH: Builder = FactorFigure(
    "Train − test gap against batch size",
    values=[("train − test accuracy", measures.train_test_gap), final("test_acc")],
    **BATCH_SIZE,
)
INIT_SCALE: Builder = FactorFigure(
    "Final test accuracy against the init scale",
    "init_scale",
    [final("test_acc")],
    panels=("init",),
    log_x=True,
    x_title="init scale (× the scheme's)",
)
ACCURACY_BY_BATCH: Builder = FactorFigure(
    "Accuracy against batch size per norm",
    values=[
        final("test_acc"),
        (
            "running − batch statistics accuracy",
            measures.bn_probe_difference("running_acc", "batch_acc"),
        ),
    ],
    **BATCH_SIZE,
)
PREPROCESSING: Builder = FactorFigure(
    "Final test accuracy by input preprocessing", "inputs", [final("test_acc")]
)
FIRST_STEP_RATIO: Builder = FactorFigure(
    "Gradient ratio at the first step against depth",
    values=[("log10 first/last hidden grad norm, step 1", measures.first_step_ratio)],
    **DEPTH,
)
DROPOUT_BEFORE_BN: Builder = FactorFigure(
    "Dropout before BN vs at the block's end",
    values=[
        final("test_acc"),
        (
            "running − precise BN accuracy",
            measures.bn_probe_difference("running_acc", "precise_acc"),
        ),
        ("variance shift (1 = none)", measures.variance_shift),
    ],
    panels=("dropout",),
    **BATCH_SIZE,
)
KESKAR: Builder = FactorFigure(
    "Final accuracy, small vs large batch (Keskar et al.'s protocol)",
    values=[final("test_acc"), final("train_acc")],
    series="norm",
    **BATCH_SIZE,
)
GENERATOR_COVERAGE: Builder = FactorFigure(
    "Mode coverage of the generated images, by the generator's norm",
    "norm",
    [*COVERAGE, ("batch correlation", measures.sample_correlation)],
    panels=("dataset",),
)
DISCRIMINATOR_COVERAGE: Builder = FactorFigure(
    "Mode coverage of the generated images, by the discriminator's norm",
    "discriminator_norm",
    COVERAGE,
    panels=("dataset",),
)
FINAL_BY_BATCH: Builder = FactorFigure(
    "Final validation and test accuracy against batch size",
    values=[final("val_acc"), final("test_acc")],
    panels=("inputs",),
    **BATCH_SIZE,
)
