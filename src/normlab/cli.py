"""The ``normlab`` command: a thin roof over the library.

Exit codes: 0 success; 1 some runs failed (the others are saved); 2 bad input (a
study file, an option, a database that is not normlab's).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from rich.table import Table

    from normlab.analysis.summary import StudySummary
    from normlab.data.prepare import Splits
    from normlab.store.db import Store
    from normlab.studies.plan import Unit
    from normlab.studies.runner import RunReport

app = typer.Typer(
    help="Rigorous, fast experiments on normalization layers and batch size.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,  # plain help: answers without importing rich
)


class _Console:
    """A rich Console made on first use, so that ``--help`` never imports rich."""

    def __init__(self, stderr: bool) -> None:
        self._stderr, self._console = stderr, None

    def get(self):
        if self._console is None:
            from rich.console import Console

            self._console = Console(stderr=self._stderr)
        return self._console

    def __getattr__(self, name: str):
        return getattr(self.get(), name)


out = _Console(stderr=False)
err = _Console(stderr=True)

DbOpt = Annotated[Path, typer.Option("--db", help="SQLite results database.")]
DataDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--data-dir", help="Dataset folder (default: $NORMLAB_DATA, else the user cache)."
    ),
]
DeviceOpt = Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:N or auto.")]
ThreadsOpt = Annotated[
    int | None, typer.Option("--threads", help="CPU threads (default: all cores).", min=1)
]
StackOpt = Annotated[
    int, typer.Option("--max-stack", help="Most runs trained together in one stack.", min=1)
]
StudyOpt = Annotated[
    str | None, typer.Option("--study", help="Study name (default: the latest one).")
]


def _fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[bold red]error:[/bold red] {message}", highlight=False)
    return typer.Exit(code)


def _open_store(db: Path) -> Store:
    from normlab.store.db import Store, StoreError

    try:
        return Store(db)
    except (StoreError, OSError) as e:
        raise _fail(str(e)) from None
    except Exception as e:  # sqlite3.DatabaseError: a file that is not a database
        raise _fail(f"{db}: cannot open as a database ({e})") from None


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min"


def _execute(
    name: str,
    spec: dict[str, object],
    configs: list,
    db: Path,
    data_dir: Path | None,
    device: str,
    threads: int | None,
    max_stack: int,
) -> RunReport:
    """Register the study, train what is missing with a progress bar, return the report."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from normlab import runtime
    from normlab.data.download import DownloadError
    from normlab.data.idx import IdxError
    from normlab.studies.runner import DataCache, pending_units, run_units

    try:
        dev = runtime.resolve_device(device)
    except ValueError as e:
        raise _fail(str(e)) from None
    runtime.set_threads(threads)
    store = _open_store(db)
    store.register_study(name, spec, configs)
    units, finished = pending_units(store, configs, max_stack, dev.type)
    todo = sum(len(u.configs) for u in units)
    err.print(
        f"study [bold]{name}[/bold]: {len(configs)} runs, {finished} already finished, "
        f"{todo} to train in {len(units)} stacks",
        highlight=False,
    )
    data = DataCache(data_dir, dev, log=err.print)
    if units:
        try:
            data.splits(units[0].configs[0])
        except (DownloadError, IdxError, FileNotFoundError, ValueError) as e:
            raise _fail(str(e)) from None
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("steps"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=err.get(),
        transient=False,
        disable=not units,
    ) as bar:
        task = bar.add_task("training", total=sum(u.steps for u in units))
        report = run_units(
            store, units, data, progress=lambda n: bar.advance(task, n), log=err.print
        )
    store.close()
    return report


def _summary_table(summary: StudySummary, title: str) -> Table:
    from rich.table import Table

    table = Table(
        title=title,
        title_justify="left",
        caption="mean ± 95% CI over seeds (Student t)",
        caption_justify="left",
    )
    for f in summary.factors:
        table.add_column(f)
    table.add_column("test acc", justify="right")
    table.add_column("test loss", justify="right")
    table.add_column("s/epoch", justify="right")
    table.add_column("runs", justify="right")
    for g in summary.groups:
        runs = f"{g.finished}/{g.runs}" + (f" ({g.diverged} diverged)" if g.diverged else "")
        table.add_row(
            *(str(v) for v in g.factors.values()),
            g.test_acc.format(4),
            g.test_loss.format(4),
            g.epoch_seconds.format(2),
            runs,
        )
    return table


def _finish(report: RunReport, db: Path) -> None:
    out.print(f"results in {db}", highlight=False)
    if report.failures:
        for f in report.failures:
            err.print(f"[red]failed[/red] {f}", highlight=False)
        raise typer.Exit(1)


@app.command()
def run(
    study_file: Annotated[Path, typer.Argument(help="Study file (TOML).")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print runs, stacks and an estimate; train nothing.")
    ] = False,
    db: DbOpt = Path("normlab.db"),
    data_dir: DataDirOpt = None,
    device: DeviceOpt = "cpu",
    threads: ThreadsOpt = None,
    max_stack: StackOpt = 16,
) -> None:
    """Run a study file: the grid's runs, grouped into stacks, skipping finished runs."""
    from normlab.studies.spec import StudyError, load_study

    try:
        spec = load_study(study_file)
        configs = spec.runs(str(study_file))
    except StudyError as e:
        raise _fail(str(e)) from None
    if dry_run:
        _print_plan(spec.name, configs, db, max_stack, device)
        return
    report = _execute(
        spec.name, spec.model_dump(), configs, db, data_dir, device, threads, max_stack
    )
    _show(db, spec.name)
    _finish(report, db)


def _print_plan(name: str, configs: list, db: Path, max_stack: int, device: str) -> None:
    from normlab import runtime
    from normlab.studies.plan import estimate_seconds, plan

    try:
        device_type = runtime.resolve_device(device).type
    except ValueError as e:
        raise _fail(str(e)) from None
    units: list[Unit] = plan(configs, max_stack, device_type)
    done = set()
    if db.exists():
        from normlab.store.db import FINISHED

        store = _open_store(db)
        done = {r for r, s in store.statuses(c.run_id for c in configs).items() if s in FINISHED}
        store.close()
    from rich.table import Table

    table = Table(
        title=f"study {name}: {len(configs)} runs in {len(units)} stacks", title_justify="left"
    )
    for col in ("#", "runs", "norm", "batch", "hidden", "opt", "inputs", "ep", "steps", "done"):
        table.add_column(col)
    for i, u in enumerate(units, 1):
        c = u.configs[0]
        table.add_row(
            str(i),
            f"{len(u.configs)}" + (" (chain)" if u.chain else ""),
            c.norm,
            "/".join(str(x.batch_size) for x in u.configs) if u.chain else str(c.batch_size),
            "-".join(map(str, c.hidden)),
            c.optimizer,
            c.inputs,
            str(c.epochs),
            str(u.steps),
            str(sum(r in done for r in u.run_ids)),
        )
    out.print(table)
    pending = [u for u in units if not set(u.run_ids) <= done]
    out.print(
        f"estimated time for the {sum(len(u.configs) for u in pending)} unfinished runs: "
        f"~{_duration(estimate_seconds(pending))} (rough, calibrated on a 2-core CPU)",
        highlight=False,
    )


@app.command()
def reproduce(
    seeds: Annotated[int, typer.Option("--seeds", help="Seeds per configuration.", min=1)] = 3,
    epochs: Annotated[int, typer.Option("--epochs", help="Epochs per run.", min=1)] = 5,
    batch_sizes: Annotated[
        str, typer.Option("--batch-sizes", help="Comma-separated batch sizes.")
    ] = "32,64,128,256",
    inputs: Annotated[
        str, typer.Option("--inputs", help="raw (0-255, as the seed), scaled (/255), standardized.")
    ] = "raw",
    semantics: Annotated[
        str, typer.Option("--semantics", help="keras (as the seed) or torch conventions.")
    ] = "keras",
    faithful: Annotated[
        bool, typer.Option("--faithful", help="Also run the notebook exactly as written.")
    ] = False,
    db: DbOpt = Path("normlab.db"),
    data_dir: DataDirOpt = None,
    device: DeviceOpt = "cpu",
    threads: ThreadsOpt = None,
    max_stack: StackOpt = 16,
) -> None:
    """The seed notebook's study done right: BN applied vs none × batch sizes × seeds."""
    from pydantic import ValidationError

    from normlab.studies import reproduce as rp

    try:
        sizes = [int(b) for b in batch_sizes.split(",") if b.strip()]
        procedure = rp.corrected(seeds, epochs, sizes, inputs, semantics)
        notebook = rp.faithful(inputs, semantics) if faithful else None
    except ValueError as e:  # pydantic's ValidationError is a ValueError
        first = e.errors()[0] if isinstance(e, ValidationError) else None
        message = (
            (f"--{str(first['loc'][0]).replace('_', '-')}: {first['msg']} (got {first['input']!r})")
            if first
            else f"--batch-sizes: {e}"
        )
        raise _fail(message) from None
    started = time.perf_counter()
    report = _execute(
        procedure.name, procedure.spec, procedure.configs, db, data_dir, device, threads, max_stack
    )
    if notebook is not None:
        more = _execute(
            notebook.name, notebook.spec, notebook.configs, db, data_dir, device, threads, max_stack
        )
        report.failures += more.failures
    _show(db, procedure.name, factors=["norm", "batch_size"])
    if notebook is not None:
        _show_faithful(db, notebook)
    err.print(f"took {_duration(time.perf_counter() - started)}", highlight=False)
    _finish(report, db)


def _show_faithful(db: Path, notebook) -> None:
    from normlab.analysis.faithful import compare

    store = _open_store(db)
    rows, identical = compare(store, notebook)
    store.close()
    from rich.table import Table

    table = Table(
        title=f"{notebook.name}: the notebook as written (seed {notebook.cell7.seed}, "
        "all 60,000 training images)",
        title_justify="left",
    )
    for col in ("cell", "model", "batch", "epochs", "test acc", "test loss"):
        table.add_column(col)
    for r in rows:
        table.add_row(*(str(v) for v in r))
    out.print(table)
    out.print(identical, highlight=False)


def _show(db: Path, study: str | None, factors: list[str] | None = None) -> None:
    from normlab.analysis.summary import summarize
    from normlab.store.db import StoreError

    store = _open_store(db)
    try:
        name = store.resolve_study(study)
    except StoreError as e:
        raise _fail(str(e)) from None
    summary = summarize(store, name, factors)
    store.close()
    out.print(_summary_table(summary, f"{name}: final-epoch test metrics over seeds"))


@app.command()
def show(db: DbOpt = Path("normlab.db"), study: StudyOpt = None) -> None:
    """Print the summary table of a study in the database."""
    if not db.exists():
        raise _fail(f"{db}: no such database")
    _show(db, study)


@app.command()
def export(
    out_file: Annotated[Path, typer.Option("--out", help="File to write.")],
    fmt: Annotated[str, typer.Option("--format", help="csv or parquet.")] = "csv",
    table: Annotated[
        str,
        typer.Option(
            "--table",
            help="epochs (one row per run and epoch), probes (per probe value) or evals "
            "(per validation evaluation within epochs).",
        ),
    ] = "epochs",
    db: DbOpt = Path("normlab.db"),
    study: StudyOpt = None,
) -> None:
    """Write a study's rows (config, metrics, timing, status) to CSV or Parquet."""
    from normlab.store import export as ex
    from normlab.store.db import StoreError

    if fmt not in ex.FORMATS:
        raise _fail(f"--format: {fmt!r} is not one of csv, parquet")
    if table not in ex.TABLES:
        raise _fail(f"--table: {table!r} is not one of {', '.join(ex.TABLES)}")
    if not db.exists():
        raise _fail(f"{db}: no such database")
    store = _open_store(db)
    try:
        name = store.resolve_study(study)
        n = ex.export(store, name, fmt, out_file, table)
    except (StoreError, RuntimeError) as e:
        raise _fail(str(e)) from None
    finally:
        store.close()
    out.print(f"wrote {n} {table} rows of study {name} to {out_file}", highlight=False)


FOLD_TOLERANCE = 1e-5  # largest |Δ logit| allowed, relative to the largest logit


def _mnist(data_dir: Path | None, inputs: str, device: str, threads: int | None) -> Splits:
    """MNIST prepared on ``device`` for the commands that train outside a study."""
    from normlab import runtime
    from normlab.data.download import DownloadError
    from normlab.data.idx import IdxError
    from normlab.data.locate import load
    from normlab.data.prepare import prepare

    try:
        dev = runtime.resolve_device(device)
        runtime.set_threads(threads)
        return prepare(load("mnist", data_dir, log=err.print), inputs, device=dev)
    except (DownloadError, IdxError, FileNotFoundError, ValueError) as e:
        raise _fail(str(e)) from None


def _inference_claim(claim, budget: str, data_dir: Path | None, device: str, threads: int | None):
    """Claim 7: train, fold and time BN networks now (nothing of it goes to the store)."""
    from normlab.analysis.claims import judge_values
    from normlab.studies.inference import inference_overhead

    splits = _mnist(data_dir, "scaled", device, threads)
    err.print(f"claim {claim.id}: training, folding and timing BN networks")
    arms, worst = inference_overhead(splits, budget)
    if worst > FOLD_TOLERANCE:
        err.print(f"[red]folded outputs differ by {worst:.1e} of the largest logit[/red]")
    return judge_values(claim, arms, runs=len(next(iter(arms.values()))["batch"]))


@app.command()
def fold(
    epochs: Annotated[int, typer.Option("--epochs", help="Epochs to train first.", min=1)] = 1,
    hidden: Annotated[str, typer.Option("--hidden", help="Comma-separated widths.")] = "512",
    inputs: Annotated[
        str, typer.Option("--inputs", help="raw (0-255), scaled (/255) or standardized.")
    ] = "scaled",
    seed: Annotated[int, typer.Option("--seed", help="Seed of the trained model.")] = 0,
    data_dir: DataDirOpt = None,
    device: DeviceOpt = "cpu",
    threads: ThreadsOpt = None,
) -> None:
    """Fold BN into the dense layer before it: prove the outputs equal, time inference.

    Trains the seed network with BN on MNIST, folds each BN into the preceding dense
    layer, compares the two on all test images, and times one forward pass of a model
    without BN, with BN and with BN folded at batch 1 and 256. Exits 1 if the outputs
    differ by more than float rounding.
    """
    from normlab.studies.inference import fold_report

    try:
        widths = tuple(int(w) for w in hidden.split(","))
    except ValueError:
        widths = ()
    if not widths or min(widths) < 1:
        raise _fail(f"--hidden: expected comma-separated positive widths, got {hidden!r}")
    splits = _mnist(data_dir, inputs, device, threads)
    err.print(f"training a BN network {widths} for {epochs} epoch(s) on MNIST ({inputs})")
    r = fold_report(splits, hidden=widths, epochs=epochs, seed=seed)
    from rich.table import Table

    same = r.max_abs_diff <= FOLD_TOLERANCE * max(1.0, r.max_logit)
    out.print(
        f"max |logit difference| {r.max_abs_diff:.2e} over {len(splits.test)} test images\n"
        f"(largest |logit| {r.max_logit:.1f}, tolerance {FOLD_TOLERANCE:g} of it): "
        + ("identical to float rounding" if same else "DIFFERENT"),
        highlight=False,
    )
    out.print(
        f"test accuracy: BN {r.test_acc_bn:.4f}, folded {r.test_acc_folded:.4f}", highlight=False
    )
    table = Table(title="latency, median of 200 forward passes", title_justify="left")
    for column in ("batch", "no BN", "BN", "BN folded"):
        table.add_column(column, justify="right")
    for b, times in r.latency.items():
        table.add_row(str(b), *(f"{times[m] * 1e6:.0f} µs" for m in ("none", "batch", "folded")))
    out.print(table)
    if not same:
        raise typer.Exit(1)


@app.command()
def claims(
    budget: Annotated[
        str, typer.Option("--budget", help="quick (minutes), standard or full (rigorous).")
    ] = "quick",
    only: Annotated[
        str | None,
        typer.Option("--only", help="Comma-separated claim numbers, e.g. 1,4 (4 brings 12)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the verdicts as JSON.")] = False,
    figures: Annotated[
        Path | None,
        typer.Option(
            "--figures", help="Folder for the claims' figures (claim 10: Ioffe & Szegedy's Fig. 1)."
        ),
    ] = None,
    db: DbOpt = Path("normlab.db"),
    data_dir: DataDirOpt = None,
    device: DeviceOpt = "cpu",
    threads: ThreadsOpt = None,
    max_stack: StackOpt = 16,
) -> None:
    """Judge the seed notebook's claims about BN: run their studies, print verdicts.

    Claims 1-10 are the seed's; 11 (Yang et al.'s counter-hypothesis to 3) and 12 (Li
    et al.'s dropout-before-BN variance shift, part of 4) are listed after the claim
    they belong to. Each claim has a built-in study; what is already in the database is
    reused, so an interrupted run resumes. Verdicts follow the rule in
    docs/STATISTICS.md.
    """
    import json
    import math

    from normlab.analysis.claims import CLAIMS, claim_study, judge, records, selected
    from normlab.report.figure1 import figure1
    from normlab.studies.spec import BUDGETS

    if budget not in BUDGETS:
        raise _fail(f"--budget: {budget!r} is not one of {', '.join(BUDGETS)}")
    try:
        numbers = [int(n) for n in only.split(",")] if only else list(CLAIMS)
    except ValueError:
        raise _fail(f"--only: expected comma-separated claim numbers, got {only!r}") from None
    try:
        wanted = selected(numbers)
    except ValueError as e:
        raise _fail(f"--only: {e}") from None
    results, failures = [], []
    for n in wanted:
        if CLAIMS[n].study is None:
            results.append(_inference_claim(CLAIMS[n], budget, data_dir, device, threads))
            continue
        spec = claim_study(CLAIMS[n], budget)
        report = _execute(
            spec.name, spec.model_dump(), spec.runs(), db, data_dir, device, threads, max_stack
        )
        failures += report.failures
        store = _open_store(db)
        results.append(judge(store, CLAIMS[n], spec.name))
        if figures is not None and n == 10:
            try:
                path = figure1(records(store, spec.name), figures / "claim-10-figure1.png")
                err.print(f"claim {n}: figure written to {path}", highlight=False)
            except (ValueError, OSError) as e:  # the verdicts still print
                err.print(f"[red]claim {n}: no figure:[/red] {e}", highlight=False)
        store.close()
    if figures is not None and 10 not in wanted:
        err.print("--figures: no figure to draw, claim 10 was not selected", highlight=False)
    if as_json:
        out.print_json(json.dumps([r.as_json() for r in results]))
    else:
        from rich.table import Table

        def num(v: float, spec: str = ".4f") -> str:
            return "—" if math.isnan(v) else format(v, spec)

        table = Table(title=f"claims, {budget} budget", title_justify="left")
        for column in ("#", "claim", "verdict", "effect [95% CI]", "p (Holm)", "runs"):
            table.add_column(column)
        for r in results:
            ci = f" [{num(r.ci_low)}, {num(r.ci_high)}]" if not math.isnan(r.ci_low) else ""
            table.add_row(str(r.id), r.claim, r.verdict, num(r.effect) + ci,
                          num(r.p_corrected, ".2g"), str(r.runs))  # fmt: skip
        out.print(table)
        for r in results:
            out.print(f"{r.id}. effect: {r.outcome}", highlight=False)
            if r.diverged:
                counts = ", ".join(f"{arm} {d}/{n}" for arm, (d, n) in r.diverged.items())
                out.print(f"   diverged runs: {counts}", highlight=False)
            for label, c, p in r.comparisons:
                out.print(f"   {label}: {num(c.effect)} ({c.test}, p {num(p, '.2g')})",
                          highlight=False)  # fmt: skip
            for label, c in r.context:
                out.print(f"   context, {label}: {num(c.effect)} ({c.test}, p {num(c.p, '.2g')} "
                          "uncorrected)", highlight=False)  # fmt: skip
    if failures:
        for f in failures:
            err.print(f"[red]failed[/red] {f}", highlight=False)
        raise typer.Exit(1)
