"""Table views shared by the terminal and the HTML page: a study's summary, the claims'
verdicts, a claim's comparisons and every run of a study."""

from __future__ import annotations

import math
from collections.abc import Sequence

from normlab.analysis.records import RunRecord
from normlab.analysis.summary import StudySummary
from normlab.analysis.verdict import Basis, Reading, Verdict
from normlab.claims.judge import ClaimResult
from normlab.claims.stored import StoredClaim
from normlab.report.plots import number, value_text
from normlab.report.style import arm_name
from normlab.report.views import Cell, TableView
from normlab.spec.settings import Setting


def _num(value: float | None, digits: int = 4) -> Cell:
    v = math.nan if value is None else float(value)
    return Cell(number(v, digits), sort=None if math.isnan(v) else v)


INTERVAL_WIDTH = 23  # characters an effect with its interval may take in a table


def interval(effect: float, low: float, high: float) -> str:
    """An effect with its 95% interval, all to the decimals that give the interval's
    width two significant digits, one fewer while that takes more than
    ``INTERVAL_WIDTH`` characters: "-0.012 [-0.020, -0.005]"."""
    if math.isnan(effect):
        return "—"
    if math.isnan(low) or not math.isfinite(effect):
        return number(effect, 3)
    finite = [v for v in (low, high) if math.isfinite(v)]
    # an end resting on a censored value, or a test below its floor, is unbounded
    width = (abs(high - low) if len(finite) == 2 else 0.0) or abs(effect) or 1.0
    decimals = min(6, max(0, 1 - math.floor(math.log10(width))))

    def end(v: float) -> str:
        return f"{v:.{decimals}f}" if math.isfinite(v) else ("∞" if v > 0 else "−∞")

    while True:
        text = f"{effect:.{decimals}f} [{end(low)}, {end(high)}]"
        if len(text) <= INTERVAL_WIDTH or decimals == 0:
            return text
        decimals -= 1


def divergence(diverged: dict[str, tuple[int, int]]) -> str:
    """How many runs diverged, naming the arms that have any (arm -> (diverged, runs))."""
    total, runs = (sum(v[i] for v in diverged.values()) for i in (0, 1))
    if not total:
        return f"none of {runs} runs"
    some = [f"{arm_name(a)} {d} of {n}" for a, (d, n) in diverged.items() if d]
    return ", ".join(some) + f" ({total} of {runs} runs)"


def summary_table(summary: StudySummary, title: str) -> TableView:
    """Reported test metrics per configuration, mean ± 95% CI over seeds (a tuned
    study's: each seed's run best on validation, with the values chosen)."""
    rows = []
    chosen = (f"chosen {'/'.join(summary.tuned)}",) if summary.tuned else ()
    for g in summary.groups:
        runs = f"{g.finished}/{g.runs}" + (f" ({g.diverged} diverged)" if g.diverged else "")
        rows.append(
            (
                *(Cell(str(v)) for v in g.factors.values()),
                *(Cell(g.chosen) for _ in chosen),
                Cell(g.test_acc.format(4), sort=g.test_acc.mean),
                Cell(g.test_loss.format(4), sort=g.test_loss.mean),
                Cell(g.epoch_seconds.format(2), sort=g.epoch_seconds.mean),
                Cell(runs, sort=g.finished),
            )
        )
    numeric = frozenset(("test acc", "test loss", "s/epoch", "runs"))
    note = "mean ± 95% CI over seeds (Student t)"
    if summary.tuned:
        note += f"; each seed's run best on validation over {', '.join(summary.tuned)}"
    return TableView(
        "summary",
        title,
        (*summary.factors, *chosen, "test acc", "test loss", "s/epoch", "runs"),
        rows,
        numeric,
        note,
    )


READING_WORDS = {
    Reading.FOR: "show the effect the claimed way",
    Reading.AGAINST: "show it the other way",
    Reading.NEGLIGIBLE: "rule out an effect that matters",
    Reading.OPEN: "are open",
}


def verdict_words(r: ClaimResult, short: bool = False) -> str:
    """A verdict as read: "refuted (no effect that matters)" when it rests on
    equivalence (``short``: "refuted ≈"), else the verdict itself."""
    if r.basis == Basis.EQUIVALENCE:
        return f"{r.verdict} ≈" if short else f"{r.verdict} (no effect that matters)"
    return str(r.verdict)


EQUIVALENCE_CAPTION = "≈: no effect that matters (an equivalence test; docs/STATISTICS.md)"


def verdict_table(results: Sequence[ClaimResult], budget: str, short: bool = False) -> TableView:
    """One row per claim: its short title, verdict, leading effect with its interval,
    Holm-corrected p, runs, detectable effect and regime (the budget is the title's).
    ``short``: a verdict resting on equivalence marked "≈" and explained in the caption,
    for a table that must fit 80 columns."""
    rows = [
        (
            Cell(str(r.id), sort=r.id),
            Cell(r.title or r.claim),
            Cell(verdict_words(r, short), style=r.verdict),
            Cell(interval(r.effect, r.ci_low, r.ci_high), sort=r.effect),
            _num(r.p_corrected, 2),
            Cell(str(r.runs), sort=r.runs),
            _num(r.detectable.get(r.lead, math.nan), 3),
            Cell(r.regime.text() if r.regime else ""),
        )
        for r in results
    ]
    # a sequential design's intervals have their look's level, wider than 95%
    ci = "effect [CI at its look]" if any(r.looks for r in results) else "effect [95% CI]"
    columns = ("#", "claim", "verdict", ci, "Holm p", "runs", "detectable", "regime")
    numeric = frozenset(("#", "Holm p", "runs", "detectable"))
    settings = sorted({r.setting for r in results if r.setting})
    title = ", ".join([f"claims, {budget} budget", *settings])
    marked = short and any(r.basis == Basis.EQUIVALENCE for r in results)
    return TableView("verdicts", title, columns, rows, numeric,
                     EQUIVALENCE_CAPTION if marked else "")  # fmt: skip


def grid_table(grid: dict[Setting, list[StoredClaim]]) -> TableView:
    """One row per claim, one column per setting: the verdict there (with its leading
    effect), "running" (a live view, before its study ends), "not run" or "n/a"."""

    def cell(sc: StoredClaim) -> Cell:
        r = sc.result
        if r is None:
            return Cell("running" if sc.study else "not run")
        if r.verdict == Verdict.NOT_APPLICABLE:
            return Cell("n/a")
        return Cell(r.verdict, style=r.verdict, sort=r.effect)

    settings = list(grid)
    claims = grid[settings[0]]
    rows = [
        (Cell(str(sc.claim.id), sort=sc.claim.id), Cell(sc.claim.title),
         *(cell(grid[s][i]) for s in settings))
        for i, sc in enumerate(claims)
    ]  # fmt: skip
    columns = ("#", "claim", *(s.label for s in settings))
    return TableView("grid", "verdicts across settings", columns, rows, frozenset(("#",)))


def comparisons_table(r: ClaimResult) -> TableView:
    """Every comparison of one claim (those the verdict rests on, then context ones)."""
    columns = (
        "comparison",
        "arm",
        "baseline",
        "effect [CI at its look]" if r.looks else "effect [95% CI]",
        "test",
        "seeds",
        "p",
        "Holm p",
        "reading",
        "detectable",
    )
    rows = []
    for j in [*r.comparisons, *r.context]:
        c, extra = j.comparison, "" if j.reading else " (context)"
        rows.append(
            (
                Cell((j.label or "all runs") + extra),
                _num(c.arm_center),
                _num(c.baseline_center),
                Cell(interval(c.effect, c.ci_low, c.ci_high), sort=c.effect),
                Cell(c.test),
                Cell(str(c.n_arm), sort=c.n_arm),
                _num(c.p, 2),
                _num(j.p_corrected, 2),
                Cell(READING_WORDS[j.reading] if j.reading else ""),
                _num(r.detectable.get(j.label, math.nan) if j.reading else math.nan, 3),
            )
        )
    return TableView(
        f"comparisons-{r.id}",
        "comparisons",
        columns,
        rows,
        frozenset(("arm", "baseline", "seeds", "p", "Holm p", "detectable")),
    )


def looks_table(r: ClaimResult) -> TableView:
    """A sequential design's looks, one row each: the seeds per arm, the level the look
    was judged at, and the verdict with its leading effect there."""
    rows = [
        (
            Cell(str(look.seeds), sort=look.seeds),
            _num(look.level, 2),
            Cell(str(look.verdict), style=look.verdict),
            Cell(interval(look.effect, look.ci_low, look.ci_high), sort=look.effect),
            _num(look.p_corrected, 2),
        )
        for look in r.looks
    ]
    columns = ("seeds per arm", "level", "verdict", "effect [CI at the level]", "Holm p")
    return TableView(f"looks-{r.id}", "the evidence, look by look", columns, rows,
                     frozenset(("seeds per arm", "level", "Holm p")))  # fmt: skip


def sequential_sentence(r: ClaimResult) -> str:
    """How a sequential design ended: at how many seeds, and why."""
    why = {"decided": "every comparison was decided", "cap": "the cap was reached"}
    because = why.get(r.stopped, "more seeds are needed")
    return (f"Sequential design: at {r.seeds_used} seeds per arm after {len(r.looks)} "
            f"look(s), {'stopped' if r.stopped else 'going on'}: {because}.")  # fmt: skip


_LAST = ("train_acc", "val_acc", "test_acc", "test_loss")  # the runs table's metrics


def runs_table(runs: Sequence[RunRecord], factors: Sequence[str], key: str = "runs") -> TableView:
    """Every run: id, status, factors, seed, last epoch's metrics, time, divergence."""
    rows = []
    for run in runs:
        last = run.epochs[-1] if run.epochs else None
        rows.append(
            (
                Cell(run.run_id),
                Cell(run.status, style=run.status),
                *(Cell(value_text(run, f)) for f in factors),
                Cell(str(run.config.seed), sort=run.config.seed),
                *(_num(getattr(last, k, None)) for k in _LAST),
                Cell(str(len(run.epochs)), sort=len(run.epochs)),
                _num(run.seconds, 3),
                Cell(
                    "" if run.diverged_step is None else str(run.diverged_step),
                    sort=run.diverged_step,
                ),
            )
        )
    numeric = (
        "seed",
        "train acc",
        "val acc",
        "test acc",
        "test loss",
        "epochs",
        "seconds",
        "diverged at",
    )
    return TableView(
        key,
        f"every run ({len(rows)})",
        ("run", "status", *factors, *numeric),
        rows,
        frozenset(numeric),
        "last epoch's metrics; seconds: the run's share of its stack's wall time",
    )
