"""The two shapes most claims' evidence takes, built from a claim's stored runs: measures
against one factor (``by_factor``, ``FactorFigure``), and curves over training
(``over_training``); a panel per value of some fields, a series per arm."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from normlab.analysis.records import RunRecord
from normlab.claims.judge import factor_value
from normlab.claims.stored import StoredClaim
from normlab.report import plots
from normlab.report.style import Colors, arm_name
from normlab.report.views import Axis, FigureView, Mark, Panel
from normlab.spec.config import RunConfig
from normlab.spec.settings import SEED, Setting

Measure = tuple[str, Callable[[RunRecord], float]]  # (what it is, measure of one run)


def _split(runs: list[RunRecord], fields: Sequence[str]) -> dict[str, list[RunRecord]]:
    """Runs by their values of ``fields`` as a label ("" when none), in the order first
    seen: a figure's panels."""
    out: dict[str, list[RunRecord]] = {}
    for run in runs:
        key = ", ".join(f"{f}={factor_value(getattr(run.config, f))}" for f in fields)
        out.setdefault(key, []).append(run)
    return out


def grouped(
    runs: list[RunRecord], arm_of: Callable[[RunConfig], str]
) -> dict[str, list[RunRecord]]:
    """Runs by their arm (``arm_of`` a run's configuration), in the order first seen: a
    panel's series."""
    out: dict[str, list[RunRecord]] = {}
    for run in runs:
        out.setdefault(arm_of(run.config), []).append(run)
    return out


def _claim_arms(sc: StoredClaim, runs: list[RunRecord]) -> dict[str, list[RunRecord]]:
    """``runs`` by the claim's arm (all under "" when the claim has no factor)."""
    return grouped(runs, sc.claim.arm_of if sc.claim.factor else lambda _: "")


def varied_fields(sc: StoredClaim) -> list[str]:
    """The fields that vary in the claim's study (seed aside): what a tooltip names."""
    runs = sc.shown
    names = [f for f in runs[0].config.model_dump() if f != "seed"] if runs else []
    return [f for f in names if len({repr(getattr(r.config, f)) for r in runs}) > 1]


def by_factor(
    sc: StoredClaim,
    colors: Colors,
    title: str,
    x: str,
    values: Sequence[Measure],
    *,
    panels: Sequence[str] = (),
    log_x: bool = False,
    x_title: str | None = None,
    marks: Callable[[list[RunRecord]], list[Mark]] | None = None,
    series: str | None = None,
    series_names: dict[str, str] | None = None,
) -> FigureView:
    """Each measure against the factor ``x``, one panel per measure and value of
    ``panels``, one series per arm (value of the claim's factor) or per value of the
    field ``series`` (named as ``series_names`` says, else as arms are)."""
    factors = varied_fields(sc)
    numeric = not isinstance(factor_value(getattr(sc.shown[0].config, x)), str)

    def x_of(run: RunRecord) -> float | str:
        v = factor_value(getattr(run.config, x))
        return v if numeric else str(v)

    order = plots.axis_values(x_of(r) for r in sc.shown)
    axis = Axis(
        x_title or x,
        log=log_x,
        categories=None if numeric else [str(v) for v in order],
        ticks=order if numeric else None,
    )
    mode = "lines+markers" if numeric else "markers"
    out = []
    for (where, runs), (what, value) in itertools.product(_split(sc.shown, panels).items(), values):
        traces = []
        arms = (
            _claim_arms(sc, runs)
            if series is None
            else grouped(runs, lambda c: str(getattr(c, series)))
        )
        for arm, members in arms.items():
            name = (series_names or {}).get(arm) or (arm_name(arm) if arm else "all runs")
            traces += plots.factor_traces(
                name, colors(arm), members, x_of, value, factors, what, order, mode
            )
        heading = where if where and len(values) == 1 else ", ".join(t for t in (what, where) if t)
        out.append(Panel(heading, axis, Axis(what), traces, marks(runs) if marks else []))
    return FigureView(
        f"c{sc.claim.id}",
        title,
        out,
        columns=min(3, len(out)),
        caption="mean over seeds with its 95% interval (Student t); points are "
        "single runs (hover for the run)",
    )


def over_training(
    sc: StoredClaim,
    colors: Colors,
    title: str,
    curve: plots.Curve,
    what: str,
    *,
    panels: Sequence[str] = (),
    marks: Sequence[Mark] = (),
    x_title: str = "optimizer step",
) -> FigureView:
    """A curve over training (``x_title``: what its keys count), one panel per value of
    ``panels``, one series per arm: the mean over seeds with a band from the lowest to
    the highest seed."""
    factors = varied_fields(sc)
    out = []
    for where, runs in _split(sc.shown, panels).items():
        traces = []
        for arm, members in _claim_arms(sc, runs).items():
            traces += plots.curve_traces(arm_name(arm), colors(arm), members, curve, factors, what)
        out.append(Panel(where or what, Axis(x_title), Axis(what), traces, list(marks)))
    return FigureView(
        f"c{sc.claim.id}",
        title,
        out,
        columns=min(3, len(out)),
        caption="mean over seeds with a band from the lowest to the highest "
        "seed; faint lines are single runs",
    )


@dataclass(frozen=True)
class FactorFigure:
    """A claim's evidence that is measures against one factor (``by_factor``)."""

    title: str
    x: str
    values: Sequence[Measure]
    panels: Sequence[str] = ()
    log_x: bool = False
    x_title: str | None = None
    series: str | None = None
    series_names: dict[str, str] | None = None

    def __call__(self, sc: StoredClaim, colors: Colors) -> list[FigureView]:
        return [by_factor(sc, colors, self.title, self.x, self.values, panels=self.panels,
                          log_x=self.log_x, x_title=self.x_title, series=self.series,
                          series_names=self.series_names)]  # fmt: skip


def final(metric: str) -> Measure:
    what = metric.replace("_acc", " accuracy").replace("_loss", " loss")
    return f"final {what}", plots.final(metric)


def target_accuracies(sc: StoredClaim) -> list[float]:
    """The target accuracies of a claim whose measures are "target=0.93", ..., in the
    setting of its runs."""
    first = sc.runs[0].config if sc.runs else None
    setting = Setting.of(first.model, first.dataset) if first else SEED
    return sorted(float(n.split("=")[1]) for n in sc.claim.measures_in(setting))
