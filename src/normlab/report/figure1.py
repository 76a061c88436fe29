"""Ioffe & Szegedy's (2015) Figure 1, drawn from claim 10's runs.

(a) validation accuracy over training steps, without and with BN (mean over seeds, and
the band from the lowest to the highest seed); (b, c) the 15th, 50th and 85th
percentiles, over 512 validation images, of the input of one sigmoid unit of the last
hidden layer over training, one seed, without (b) and with (c) BN. The paper plots
test accuracy over 50,000 steps; normlab's curve is the validation split's, at the
study's ``eval_every`` steps and each epoch's end, and as many steps as the budget has.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from normlab.analysis.records import RunRecord, accuracy_curve, records
from normlab.claims.definitions import CLAIMS, claim_study
from normlab.store.db import Store

PERCENTILES = (15, 50, 85)
ARMS = (("none", "without BN", "tab:blue"), ("batch", "with BN", "tab:red"))


def percentile_curves(run: RunRecord) -> tuple[int, np.ndarray, np.ndarray]:
    """The middle fixed unit of the last hidden layer: (unit, steps, values [steps, 3])
    of its 15/50/85th input percentiles."""
    names = {str(r["name"]) for r in run.probes if r["probe"] == "activations"}
    units = sorted({int(n.split("_unit")[1]) for n in names if n.startswith("p50_unit")})
    if not units:
        raise ValueError("the runs have no activation percentiles (probe 'activations')")
    unit = units[len(units) // 2]
    last = max(int(r["layer"]) for r in run.probes if r["probe"] == "activations")
    by_step: dict[int, dict[int, float]] = defaultdict(dict)
    for r in run.probes:
        if r["probe"] == "activations" and r["layer"] == last and r["value"] is not None:
            for q in PERCENTILES:
                if r["name"] == f"p{q}_unit{unit}":
                    by_step[int(r["step"])][q] = float(r["value"])
    steps = sorted(s for s, v in by_step.items() if len(v) == len(PERCENTILES))
    values = np.array([[by_step[s][q] for q in PERCENTILES] for s in steps])
    return unit, np.array(steps), values


def figure1(runs: list[RunRecord], path: Path) -> Path:
    """Draw Figure 1 from ``runs`` (claim 10's study) into the PNG ``path``."""
    # A Figure of its own renders to a file without pyplot, so no global backend is set.
    from matplotlib.figure import Figure

    arms = {norm: [r for r in runs if r.config.norm == norm] for norm, _, _ in ARMS}
    missing = [norm for norm, members in arms.items() if not members]
    if missing:
        raise ValueError(f"figure 1 needs runs without and with BN; none with norm={missing[0]}")
    fig = Figure(figsize=(13, 3.8))
    axes = fig.subplots(1, 3)
    axes[2].sharey(axes[1])  # (b) and (c) on one scale, as the paper draws them
    for norm, label, color in ARMS:
        curves = [accuracy_curve(r) for r in arms[norm]]
        steps = sorted(set.intersection(*(set(c) for c in curves)))
        acc = np.array([[c[s] for s in steps] for c in curves])
        axes[0].plot(steps, acc.mean(0), color=color, label=label)
        axes[0].fill_between(steps, acc.min(0), acc.max(0), color=color, alpha=0.2)
    axes[0].set(title="(a) validation accuracy", xlabel="training step", ylabel="accuracy")
    axes[0].legend(loc="lower right")
    for ax, (norm, label, color), letter in zip(axes[1:], ARMS, "bc", strict=True):
        run = min(arms[norm], key=lambda r: r.config.seed)
        unit, steps, values = percentile_curves(run)
        for i, q in enumerate(PERCENTILES):
            ax.plot(steps, values[:, i], color=color, alpha=1.0 if q == 50 else 0.55)
        ax.set(
            title=f"({letter}) {label}: unit {unit}, last hidden layer",
            xlabel="training step",
            ylabel="sigmoid input, 15/50/85th pct",
        )
    fig.suptitle(
        f"Ioffe & Szegedy Figure 1: {len(arms['none'])} + {len(arms['batch'])} runs of "
        f"{'×'.join(map(str, runs[0].config.hidden))} sigmoid, batch "
        f"{runs[0].config.batch_size}"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path


def claim_figures(store: Store, budget: str, ids: list[int], out_dir: Path) -> list[str]:
    """Draw the figures of the claims ``ids`` that have one (claim 10: Figure 1) from
    their studies at ``budget`` into ``out_dir``; a line for each, saying where it went or
    why there is none (a figure that cannot be drawn never stops the verdicts)."""
    if 10 not in ids:
        return ["--figures: no figure to draw, claim 10 was not selected"]
    try:
        runs = records(store, claim_study(CLAIMS[10], budget).name)
        path = figure1(runs, out_dir / "claim-10-figure1.png")
    except (ValueError, OSError) as err:
        return [f"claim 10: no figure: {err}"]
    return [f"claim 10: figure written to {path}"]
