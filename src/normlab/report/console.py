"""Terminal renderings (rich) of what the application layer returns: study plans and
summaries, the notebook-as-written comparison, claim verdicts, BN folding, and a
progress bar that follows a running study."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from normlab.analysis.faithful import FaithfulComparison
from normlab.analysis.summary import StudySummary
from normlab.analysis.verdict import Verdict
from normlab.claims.judge import ClaimResult
from normlab.experiments.plan import Unit
from normlab.experiments.progress import Observer
from normlab.models.registry import FOLD_TOLERANCE
from normlab.report import tables
from normlab.report.header import duration
from normlab.report.plots import number
from normlab.report.style import VERDICT_COLORS
from normlab.report.tables import interval
from normlab.report.views import Cell, TableView

if TYPE_CHECKING:  # training's report; rendering it must not load torch
    from normlab.experiments.costs import StudyPlan
    from normlab.experiments.fold import FoldReport
    from normlab.report.build import ReportResult


class ProgressObserver(Observer):
    """A study's plan, then a progress bar on ``console``: the bar and its ETA follow
    the units' estimated work (``Unit.work``: a step of a small batch costs less than
    one of a large batch, but not in proportion), the count beside it the steps."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.bar: Progress | None = None
        self.task = None
        self.steps = 0

    def planned(self, study: str, runs: int, finished: int, units: Sequence[Unit]) -> None:
        todo = sum(len(u.configs) for u in units)
        self.console.print(
            f"study [bold]{study}[/bold]: {runs} runs, {finished} already finished, "
            f"{todo} to train in {len(units)} stacks",
            highlight=False,
        )
        self.bar = Progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[steps]}/{task.fields[total_steps]} steps"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=self.console,
            disable=not units,
        )
        self.steps = 0  # an observer may follow several studies in turn
        self.task = self.bar.add_task("training", total=sum(u.work for u in units), steps=0,
                                      total_steps=sum(u.steps for u in units))  # fmt: skip
        self.bar.start()

    def advanced(self, steps: int, work: float) -> None:
        if self.bar is not None:
            self.steps += steps
            self.bar.update(self.task, advance=work, steps=self.steps)

    def message(self, text: str) -> None:
        self.console.print(text, highlight=False)

    def done(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


def plan_table(study: str, runs: int, units: Sequence[Unit], done: set[str]) -> Table:
    """One row per unit of a study's plan: its runs, shape, steps and what is done."""
    table = Table(title=f"study {study}: {runs} runs in {len(units)} stacks", title_justify="left")
    firsts = [u.configs[0] for u in units]
    # The seed's family alone shows its widths; others are described in a few words.
    described = any(c.model != "mlp" for c in firsts)
    datasets = len({c.dataset for c in firsts}) > 1
    shape = "model" if described else "hidden"
    columns = ("#", "runs", *(("data",) if datasets else ()), "norm", "batch", shape, "opt",
               "inputs", "ep", "steps", "done")  # fmt: skip
    for col in columns:
        table.add_column(col)
    for i, (u, c) in enumerate(zip(units, firsts, strict=True), 1):
        table.add_row(
            str(i),
            f"{len(u.configs)}" + (" (chain)" if u.chain else ""),
            *((c.dataset,) if datasets else ()),
            c.norm,
            "/".join(str(x.batch_size) for x in u.configs) if u.chain else str(c.batch_size),
            c.family.describe(c) if described else "-".join(map(str, c.hidden)),
            c.optimizer,
            c.inputs,
            str(c.epochs),
            str(u.steps),
            str(sum(r in done for r in u.run_ids)),
        )
    return table


def table(view: TableView, skip: Sequence[str] = (), compact: bool = False) -> Table:
    """A table view as a rich table (the HTML page renders the same view), without the
    columns ``skip`` names, verdicts in their colours. ``compact``: no borders and no
    wrapping, for a table that must keep one line per row in 80 columns."""
    keep = [i for i, c in enumerate(view.columns) if c not in skip]
    style = (
        {"box": box.SIMPLE_HEAD, "show_edge": False, "collapse_padding": True} if compact else {}
    )
    out = Table(title=view.title, title_justify="left", caption=view.caption or None,
                caption_justify="left", pad_edge=not compact, **style)  # fmt: skip
    for i in keep:
        out.add_column(view.columns[i], justify="right" if view.columns[i] in view.numeric
                       else "left", no_wrap=compact)  # fmt: skip
    for row in view.rows:
        out.add_row(*(_styled(row[i]) for i in keep))
    return out


def _styled(cell: Cell) -> str:
    color = VERDICT_COLORS.get(cell.style)
    text = escape(cell.text)
    return f"[{color}]{text}[/]" if color else text


def plan_report(study: str, runs: int, plan: StudyPlan) -> list:
    """What ``normlab run --dry-run`` prints: the plan's table and the measured estimate."""
    lines: list = [plan_table(study, runs, plan.units, plan.done)]
    e = plan.estimate
    if e is not None:
        where = ("this process" if plan.executor == "local"
                 else f"{plan.executor}, {e.slots} units at once")  # fmt: skip
        lines.append(Text(
            f"estimated time for the {sum(len(u.configs) for u in plan.pending)} unfinished "
            f"runs on {where}: ~{duration(e.seconds)} (measured: {e.kinds} kinds of unit "
            f"timed in {e.measuring:.1f} s; reading data {e.loading:.1f} s)"))  # fmt: skip
    return lines


def report_lines(r: ReportResult) -> list[str]:
    """What ``normlab report`` prints: the file written, and what is missing from it."""
    return [
        f"wrote {r.path} ({r.bytes / 1e6:.1f} MB, {r.figures} figures) in {r.seconds:.1f} s",
        *(f"  missing: {m}" for m in r.missing),
        *(f"  {a}" for a in r.assets),
    ]


def summary_table(summary: StudySummary, title: str) -> Table:
    """Final-epoch test metrics per configuration, mean ± 95% CI over seeds."""
    return table(tables.summary_table(summary, title))


def faithful_table(notebook, comparison: FaithfulComparison) -> Table:
    """The notebook's cells as it ran them (``reproduce.Faithful``): cell, model, batch,
    epochs, test metrics."""
    title = (
        f"{notebook.name}: the notebook as written (seed {notebook.cell7.seed}, "
        f"all {notebook.cell7.source.train_size:,} training images)"
    )
    table = Table(title=title, title_justify="left")
    for col in ("cell", "model", "batch", "epochs", "test acc", "test loss"):
        table.add_column(col)
    for c in comparison.cells:
        table.add_row(c.cell, c.model, str(c.batch_size), str(c.epochs), f"{c.test_acc:.4f}",
                      f"{c.test_loss:.4f}")  # fmt: skip
    return table


def claims_table(results: Sequence[ClaimResult], budget: str) -> Table:
    """One row per claim, 80 columns wide: short title, verdict, the leading effect with
    its interval, p and runs (the budget is in the title; the claim itself below)."""
    view = tables.verdict_table(results, budget, short=True)
    return table(view, skip=("regime", "detectable"), compact=True)


def claim_details(r: ClaimResult) -> list[str]:
    """The lines under the table for one claim: its outcome, diverged runs, every
    comparison, the context comparisons and the notes."""
    if r.verdict == Verdict.NOT_APPLICABLE:
        return [f"{r.id}. {r.claim}", f"   not applicable: {r.notes[0]}"]
    lines = [f"{r.id}. {r.claim}", f"   effect: {r.outcome}"]
    if r.regime:
        lines.append(f"   regime: {r.regime.text()}")
    if r.diverged:
        lines.append(f"   diverged: {tables.divergence(r.diverged)}")
    lines.append(f"   verdict: {tables.verdict_words(r)}")
    if r.looks:
        lines.append(f"   {tables.sequential_sentence(r)}")
        lines.append("   looks: " + "; ".join(
            f"{look.seeds} seeds {look.verdict} (level {number(look.level, 2)})"
            for look in r.looks))  # fmt: skip
    for j in r.comparisons:
        c = j.comparison
        effect = interval(c.effect, c.ci_low, c.ci_high)
        lines.append(f"   {j.label}: {effect} ({c.test}, Holm p {number(j.p_corrected, 2)}, "
                     f"{j.reading})")  # fmt: skip
    for j in r.context:
        c = j.comparison
        effect = interval(c.effect, c.ci_low, c.ci_high)
        lines.append(f"   context, {j.label}: {effect} ({c.test}, p {number(c.p, 2)} "
                     "uncorrected)")  # fmt: skip
    if r.dropped:
        lines.append(f"   dropped: {r.dropped} value(s) without an outcome (see the notes)")
    detectable = r.detectable.get(r.lead, float("nan"))
    lines.append(f"   power: detects {number(detectable, 3)} with 80% power"
                 + (f"; {r.power}" if r.power else ""))  # fmt: skip
    lines += [f"   note: {note}" for note in r.notes]
    return lines


def fold_lines(r: FoldReport) -> list[str]:
    """What ``normlab fold`` found, before its latency table."""
    return [
        f"max |logit difference| {r.max_abs_diff:.2e} over {r.images} test images",
        f"(largest |logit| {r.max_logit:.1f}, tolerance {FOLD_TOLERANCE:g} of it): "
        + ("identical to float rounding" if r.identical else "DIFFERENT"),
        f"test accuracy: BN {r.test_acc_bn:.4f}, folded {r.test_acc_folded:.4f}",
    ]


def latency_table(r: FoldReport) -> Table:
    """Median forward-pass latency without BN, with BN and with BN folded, per batch."""
    table = Table(title=f"latency, median of {r.repeats} forward passes", title_justify="left")
    for column in ("batch", "no BN", "BN", "BN folded"):
        table.add_column(column, justify="right")
    for b, times in r.latency.items():
        table.add_row(str(b), *(f"{times[m] * 1e6:.0f} µs" for m in ("none", "batch", "folded")))
    return table
