"""The report page of one study: its header, learning curves, final metrics against
each factor, per-step training loss with diverged runs marked, every run, and what is
still missing."""

from __future__ import annotations

import json
import math
from collections import Counter

from normlab.analysis.records import RunRecord, StudyRecord
from normlab.analysis.summary import StudySummary
from normlab.claims.judge import factor_value
from normlab.report import plots
from normlab.report.header import reproduce_command, run_facts, study_facts
from normlab.report.plots import describe, number
from normlab.report.style import Colors, arm_name, shade
from normlab.report.tables import runs_table, summary_table
from normlab.report.views import Axis, FigureView, Header, Page, Panel, Section, Trace
from normlab.types import FINISHED, Status

SPLITS = ("train", "val", "test")
LOG_FACTORS = ("batch_size", "lr", "init_scale", "ghost_batch_size", "momentum")
Losses = dict[str, tuple[list[int], list[float]]]


class Arms:
    """The study's configurations (runs alike but for the seed), in study order, each
    with a legend name and a colour: one hue per value of the arm factor (``norm`` when
    it varies), shaded apart for the configurations that share it."""

    def __init__(self, runs: list[RunRecord], factors: list[str], colors: Colors) -> None:
        self.factors = factors
        self.arm = "norm" if "norm" in factors else (factors[0] if factors else None)
        self.groups: dict[str, list[RunRecord]] = {}
        for run in runs:
            self.groups.setdefault(self.key(run), []).append(run)
        hues = Counter(self._hue(g[0]) for g in self.groups.values())
        seen: Counter = Counter()
        self.color, self.name = {}, {}
        for key, group in self.groups.items():
            hue = self._hue(group[0])
            self.color[key] = shade(colors(hue), seen[hue], hues[hue])
            seen[hue] += 1
            self.name[key] = self.label(group[0], factors)

    def key(self, run: RunRecord) -> str:
        return json.dumps([str(getattr(run.config, f)) for f in self.factors])

    def _hue(self, run: RunRecord) -> str:
        return str(getattr(run.config, self.arm)) if self.arm else "all"

    def label(self, run: RunRecord, factors: list[str]) -> str:
        """``run``'s values of ``factors`` for a legend, the arm's first by its name
        ("BN · batch_size=32")."""
        if not factors:
            return "all runs"
        rest = describe(run, [f for f in factors if f != self.arm])
        if self.arm not in factors:
            return rest
        return arm_name(getattr(run.config, self.arm)) + (f" · {rest}" if rest else "")


def _epoch_clock(run: RunRecord, clock: str) -> list[float]:
    """The x of each epoch's end: its step, or the run's training seconds by then."""
    if clock == "step":
        return [e.epoch * run.steps_per_epoch for e in run.epochs]
    total, out = 0.0, []
    for e in run.epochs:
        total += (e.seconds or 0.0) - (e.eval_seconds or 0.0)
        out.append(total)
    return out


def split_curve(metric: str, split: str, clock: str) -> plots.Curve:
    """A run's ``split`` ``metric`` (acc or loss) over steps or training seconds: each
    epoch's end, and for validation the evaluations within epochs."""

    def curve(run: RunRecord) -> dict[float, float]:
        points = {}
        if split == "val":
            for e in run.evals:
                points[e.step if clock == "step" else e.seconds] = getattr(e, f"val_{metric}")
        for x, e in zip(_epoch_clock(run, clock), run.epochs, strict=True):
            points[x] = getattr(e, f"{split}_{metric}")
        return {x: points[x] for x in sorted(points) if points[x] is not None}

    return curve


def learning_curves(arms: Arms, clock: str) -> FigureView:
    """Accuracy and loss of train, validation and test over training (one row each)."""
    label = "optimizer step" if clock == "step" else "training seconds (evaluation excluded)"
    panels = []
    for metric, what in (("acc", "accuracy"), ("loss", "loss")):
        for split in SPLITS:
            traces = []
            for key, runs in arms.groups.items():
                traces += plots.curve_traces(
                    arms.name[key],
                    arms.color[key],
                    runs,
                    split_curve(metric, split, clock),
                    arms.factors,
                    f"{split} {what}",
                )
            y = Axis(what)
            panels.append(Panel(f"{split} {what}", Axis(label), y, traces))
    title = "Against optimizer steps" if clock == "step" else "Against training seconds"
    caption = (
        "mean over seeds with a band from the lowest to the highest seed; faint lines "
        "are single runs. Train: the epoch's mean in train mode; val and test: eval "
        "mode after each epoch (val also within epochs when eval_every is set)."
    )
    return FigureView(f"curves-{clock}", title, panels, columns=3, caption=caption)


def by_factor(arms: Arms, factor: str, colors: Colors) -> FigureView:
    """Final test accuracy and loss against ``factor``, one series per setting of the
    other factors, with 95% intervals over seeds."""
    runs = [r for group in arms.groups.values() for r in group]
    values = plots.axis_values(factor_value(getattr(r.config, factor)) for r in runs)
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
    log = numeric and (
        factor in LOG_FACTORS or (min(values) > 0 and max(values) / min(values) >= 8)
    )
    x_axis = Axis(
        factor,
        log=log,
        categories=None if numeric else [str(v) for v in values],
        ticks=values if numeric else None,
    )
    others = [f for f in arms.factors if f != factor]
    series: dict[str, list[RunRecord]] = {}
    for run in runs:
        series.setdefault(arms.label(run, others), []).append(run)
    panels = []
    for metric, what in (("test_acc", "test accuracy"), ("test_loss", "test loss")):
        traces = []
        for name, members in series.items():
            color = arms.color[arms.key(members[0])] if factor != arms.arm else colors(name)
            traces += plots.factor_traces(
                name,
                color,
                members,
                lambda r: _x(getattr(r.config, factor), numeric),
                plots.final(metric),
                arms.factors,
                what,
                order=[_x(v, numeric) for v in values],
                mode="lines+markers" if numeric else "markers",
            )
        panels.append(Panel(f"final {what}", x_axis, Axis(what), traces))
    return FigureView(
        f"factor-{factor}",
        f"Final test metrics against {factor}",
        panels,
        columns=2,
        caption="mean over seeds with its 95% interval (Student t); "
        "points are single runs; diverged runs have no final value",
    )


def _x(value: object, numeric: bool) -> float | str:
    v = factor_value(value)
    return v if numeric else str(v)


def step_losses(arms: Arms, losses: Losses) -> FigureView:
    """Training loss at every kept step, mean over seeds, diverged runs marked where
    they stopped."""
    traces: list[Trace] = []
    diverged = []
    for key, runs in arms.groups.items():

        def curve(run: RunRecord) -> dict[float, float]:
            steps, values = losses.get(run.run_id, ([], []))
            return dict(zip(steps, values, strict=True))

        traces += plots.curve_traces(
            arms.name[key], arms.color[key], runs, curve, arms.factors, "training loss"
        )
        diverged += [(run, arms.color[key], curve(run))
                     for run in runs if run.status == Status.DIVERGED]  # fmt: skip
    for run, color, curve in diverged:
        finite = [v for v in curve.values() if math.isfinite(v)]
        y = finite[-1] if finite else 1.0
        traces.append(
            Trace(
                "diverged",
                [float(run.diverged_step or 0)],
                [y],
                color,
                group="diverged",
                mode="markers",
                symbol="x",
                size=11,
                legend=run is diverged[0][0],
                hover=[
                    f"run {run.run_id} diverged at step {run.diverged_step}<br>"
                    f"seed {run.config.seed}<br>{describe(run, arms.factors)}"
                ],
            )
        )
    runs = sum(len(g) for g in arms.groups.values())
    caption = (
        f"{len(diverged)} of {runs} runs diverged (✕ where each stopped, at its last finite loss). "
        if diverged
        else "No run diverged. "
    ) + ("Mean over seeds with a band from the lowest to the highest seed; log scale.")
    panel = Panel(
        "training loss (train mode, the step's batch)",
        Axis("optimizer step"),
        Axis("loss", log=True),
        traces,
    )
    return FigureView("step-loss", "Training loss per step", [panel], columns=1, caption=caption)


def _missing(study: StudyRecord, arms: Arms, command: str) -> Section | None:
    waiting = [r for r in study.runs if r.status not in FINISHED]
    if not waiting:
        return None
    counts = Counter(r.status for r in waiting)
    what = ", ".join(f"{n} {s}" for s, n in counts.items())
    sentences = [
        f"{len(waiting)} of {len(study.runs)} runs have no outcome yet ({what}): the "
        f"study is still running or was interrupted. `{command}` trains what is "
        "missing and reuses the rest."
    ]
    errors = Counter(r.error for r in waiting if r.error)
    notes = [f"{n} run(s) failed with: {e}" for e, n in errors.items()]
    return Section(
        "missing",
        "Missing runs",
        sentences,
        tables=[runs_table(waiting, arms.factors, "missing-runs")],
        notes=notes,
        badge=(f"{len(waiting)} missing", "inconclusive"),
    )


def _overview(study: StudyRecord, summary: StudySummary, arms: Arms) -> list[str]:
    """Sentences from the numbers: the best and worst configuration, and divergence."""
    groups = [g for g in summary.groups if g.test_acc.n]
    if not groups:
        return ["No run has finished yet."]
    best = max(groups, key=lambda g: g.test_acc.mean)
    worst = min(groups, key=lambda g: g.test_acc.mean)

    def name(g) -> str:
        return ", ".join(f"{k}={v}" for k, v in g.factors.items()) or "all runs"

    out = [
        f"Highest final test accuracy: {name(best)} with {number(best.test_acc.mean)} "
        f"(± {number(best.test_acc.half_width)}, {best.test_acc.n} seeds)."
    ]
    if worst is not best:
        out.append(
            f"Lowest: {name(worst)} with {number(worst.test_acc.mean)}; the difference "
            f"is {number(best.test_acc.mean - worst.test_acc.mean)}."
        )
    diverged = sum(g.diverged for g in summary.groups)
    if diverged:
        out.append(f"{diverged} run(s) diverged and are counted apart, not averaged in.")
    return out


def study_page(study: StudyRecord, summary: StudySummary, losses: Losses, db: str) -> Page:
    """The report of ``study`` (its runs, their summary and per-step losses)."""
    colors = Colors()
    arms = Arms(study.runs, summary.factors, colors)
    command, study_file = reproduce_command(study, db)
    header = Header([*study_facts(study), *run_facts(study.runs)], command, study_file)
    sections = [
        Section(
            "summary",
            "Summary",
            _overview(study, summary, arms),
            tables=[summary_table(summary, "reported test metrics per configuration")],
        )
    ]
    sections.append(
        Section(
            "curves",
            "Learning curves",
            figures=[learning_curves(arms, "step"), learning_curves(arms, "seconds")],
        )
    )
    if summary.factors:
        sections.append(
            Section(
                "factors",
                "Final metrics against each factor",
                figures=[by_factor(arms, f, colors) for f in summary.factors],
            )
        )
    sections.append(Section("steps", "Training loss per step", figures=[step_losses(arms, losses)]))
    missing = _missing(study, arms, command)
    if missing:
        sections.append(missing)
    sections.append(Section("runs", "Every run", tables=[runs_table(study.runs, arms.factors)]))
    waiting = sum(r.status not in FINISHED for r in study.runs)
    gaps = [f"{waiting} of {len(study.runs)} runs not finished"] if waiting else []
    return Page(f"normlab report: {study.name}", "one study", header, sections, gaps)
