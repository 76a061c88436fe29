"""Building blocks of figure views from stored runs: curves over training with a band
over seeds, and a value against a factor with its 95% interval. Every point a run
contributes carries a tooltip naming the run, its seed and its factors."""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from normlab.analysis.records import RunRecord
from normlab.analysis.summary import Estimate
from normlab.report.views import Trace

MAX_POINTS = 250  # per line: more than a figure's width in pixels shows nothing more
RUN_POINTS = 16_000  # points shared by the single-run lines of one arm's curve
FEW_POINTS = 30  # a line of this many points or fewer also marks each point

Curve = Callable[[RunRecord], dict[float, float]]
Value = Callable[[RunRecord], float]


def number(value: float, digits: int = 4) -> str:
    """``value`` to ``digits`` significant digits, without an exponent where a reader
    does not need one ("0.9812", "1,240", "3.1e-05"); NaN is "—"."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if math.isinf(value):
        return "∞" if value > 0 else "−∞"
    if value == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(value)))
    if magnitude >= digits or magnitude < -3:
        return f"{value:.{digits - 1}e}".replace("e-0", "e-").replace("e+0", "e+")
    decimals = max(0, digits - 1 - magnitude)
    return f"{value:,.{decimals}f}"


def downsample(x: Sequence[float], y: Sequence[float], limit: int = MAX_POINTS):
    """At most ``limit`` points: consecutive points averaged in equal buckets (first and
    last kept), so that a 10,000-step loss curve keeps its shape in 250 points."""
    if len(x) <= limit:
        return list(x), list(y)
    edges = np.linspace(0, len(x), limit + 1).astype(int)
    xs, ys = np.asarray(x, float), np.asarray(y, float)
    with np.errstate(all="ignore"):
        bx = [float(xs[a:b].mean()) for a, b in itertools.pairwise(edges)]
        by = [
            float(np.nanmean(ys[a:b])) if np.isfinite(ys[a:b]).any() else math.nan
            for a, b in itertools.pairwise(edges)
        ]
    bx[0], by[0], bx[-1], by[-1] = float(xs[0]), float(ys[0]), float(xs[-1]), float(ys[-1])
    return bx, by


def final(metric: str) -> Value:
    """``RunRecord.final`` of ``metric`` as a measure of one run."""

    return lambda run: run.final(metric)


def axis_values(values: Iterable[object]) -> list:
    """The distinct ``values`` of a factor as an axis lists them: numbers ascending,
    anything else (names, "8×128" networks) in the order the study first has them."""
    distinct = list(dict.fromkeys(values))
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in distinct)
    return sorted(distinct) if numeric else distinct


def value_text(run: RunRecord, factor: str) -> str:
    """The run's value of ``factor`` as text (widths joined: "128-64")."""
    v = getattr(run.config, factor)
    return "-".join(map(str, v)) if isinstance(v, tuple) else str(v)


def describe(run: RunRecord, factors: Iterable[str]) -> str:
    """The run's values of ``factors``, e.g. "norm=batch, batch_size=32"."""
    return ", ".join(f"{f}={value_text(run, f)}" for f in factors)


def tooltip(run: RunRecord, factors: Iterable[str], what: str, value: float | None = None) -> str:
    """A tooltip for ``run``'s points: run id, seed, factors and what is measured, then
    ``value`` (without one, each point adds its own: see ``Trace.hover``)."""
    where = describe(run, factors)
    text = f"run {run.run_id}<br>seed {run.config.seed}" + (f"<br>{where}" if where else "")
    return f"{text}<br>{what}" + ("" if value is None else f": {number(value)}")


def over_seeds(curves: list[dict[float, float]]) -> tuple[list[float], ...]:
    """Mean, lowest and highest value over the curves at every x any of them has (finite
    values only; a diverged run stops counting where it stopped)."""
    at: dict[float, list[float]] = defaultdict(list)
    for curve in curves:
        for x, y in curve.items():
            if y is not None and math.isfinite(y):
                at[x].append(y)
    xs = sorted(at)
    return (
        xs,
        [float(np.mean(at[x])) for x in xs],
        [min(at[x]) for x in xs],
        [max(at[x]) for x in xs],
    )


def curve_traces(
    name: str,
    color: str,
    runs: list[RunRecord],
    curve: Curve,
    factors: Sequence[str],
    what: str,
    group: str | None = None,
    dash: str = "solid",
) -> list[Trace]:
    """A line of the mean over ``runs`` with a band from the lowest to the highest run,
    and each run as a faint line whose points name it."""
    group = group or name
    curves = [curve(r) for r in runs]
    xs, mean, low, high = over_seeds(curves)
    if not xs:
        return []
    x, m = downsample(xs, mean)
    band = (downsample(xs, low)[1], downsample(xs, high)[1]) if len(runs) > 1 else None
    mode = "lines+markers" if len(x) <= FEW_POINTS else "lines"
    traces = [Trace(name, x, m, color, group=group, mode=mode, band=band, dash=dash)]
    # many faint lines show the spread as well with fewer points each: the page stays small
    per_run = min(MAX_POINTS, max(50, RUN_POINTS // len(runs)))
    for run, c in zip(runs, curves, strict=True):
        if len(runs) == 1 or not c:
            continue
        rx, ry = downsample(list(c), list(c.values()), per_run)
        traces.append(
            Trace(
                f"{name} (run)",
                rx,
                ry,
                color,
                group=group,
                legend=False,
                width=0.8,
                opacity=0.35,
                dash=dash,
                mode=mode,
                hover=tooltip(run, factors, what),
            )
        )
    if len(runs) == 1:  # the one run is the mean: let its points name it
        traces[0] = Trace(
            name,
            x,
            m,
            color,
            group=group,
            dash=dash,
            mode=mode,
            hover=tooltip(runs[0], factors, what),
        )
    return traces


def factor_traces(
    name: str,
    color: str,
    runs: list[RunRecord],
    x_of: Callable[[RunRecord], float | str],
    value: Value,
    factors: Sequence[str],
    what: str,
    order: Sequence[float | str] | None = None,
    mode: str = "lines+markers",
) -> list[Trace]:
    """The mean of ``value`` over ``runs`` at each x with its 95% interval (Student t
    over seeds) as error bars (``mode`` "bar" draws the mean as bars), and each run as a
    point that names it (NaN: left out)."""
    by_x: dict[float | str, list[tuple[RunRecord, float]]] = defaultdict(list)
    for run in runs:
        by_x[x_of(run)].append((run, value(run)))
    xs = [x for x in (order or sorted(by_x)) if x in by_x]
    estimates = [Estimate.of([v for _, v in by_x[x]]) for x in xs]
    shown = [(x, e) for x, e in zip(xs, estimates, strict=True) if e.n]
    if not shown:
        return []
    mean = Trace(
        name,
        [x for x, _ in shown],
        [e.mean for _, e in shown],
        color,
        group=name,
        mode=mode,
        error=[0.0 if math.isnan(e.half_width) else e.half_width for _, e in shown],
        hover=[
            f"{name}<br>{x}: mean {number(e.mean)} ± {number(e.half_width)} (95% CI, {e.n} runs)"
            for x, e in shown
        ],
    )
    points = [(x, run, v) for x in xs for run, v in by_x[x] if math.isfinite(v)]
    seeds = Trace(
        f"{name} (run)",
        [x for x, _, _ in points],
        [v for _, _, v in points],
        color,
        group=name,
        mode="markers",
        legend=False,
        opacity=0.45,
        size=5,
        hover=[tooltip(run, factors, what, v) for _, run, v in points],
    )
    return [mean, seeds]
