"""The ``normlab`` command: parse the options, call ``normlab.app.api``, render.

Exit codes: 0 success; 1 some runs failed (the others are saved); 2 bad input (a study
file, an option, a database that is not normlab's). Heavy modules load inside commands:
``normlab --help`` answers at once and ``show``/``export`` never load torch.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from typer import Option

app = typer.Typer(
    help="Rigorous, fast experiments on normalization layers and batch size.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,  # plain help: answers without importing rich
)

Db = Annotated[Path, Option("--db", help="SQLite results database.")]
DataDir = Annotated[Path | None, Option("--data-dir", help="Data (default: $NORMLAB_DATA).")]
Device = Annotated[str, Option("--device", help="cpu, cuda, cuda:N or auto.")]
Threads = Annotated[int | None, Option("--threads", help="Threads per unit; pool/ray: 1.", min=1)]
MaxStack = Annotated[int, Option("--max-stack", help="Most runs in one stack.", min=1)]
Executor = Annotated[str, Option("--executor", help="local, pool (processes here) or ray.")]
Address = Annotated[str | None, Option("--address", help="Ray cluster: auto or HOST:PORT.")]
StudyName = Annotated[str | None, Option("--study", help="Study name (default: the latest).")]
Inputs = Annotated[str, Option("--inputs", help="raw (0-255), scaled (/255) or standardized.")]
Budget = Annotated[str, Option("--budget", help="quick (minutes), standard, full (rigorous), "
                              "or auto: fresh seeds in rounds until decided (auto<N>: cap N).")]
Only = Annotated[str | None, Option("--only", help="Claim numbers, e.g. 1,4 (4 brings 12).")]
Model = Annotated[str, Option("--model", help="The claims' model family: mlp or cnn.")]
Dataset = Annotated[str, Option("--dataset", help="The claims' dataset: mnist or fashion-mnist.")]
_OPTIONS = {"ids": "only"}  # api parameters whose option has another name
_TABLES = "epochs (per run and epoch), probes, evals (within epochs) or measures (claims')."


def _consoles():
    from rich.console import Console

    # soft_wrap: a line of text stays one line (a path is never broken) when piped;
    # tables are still laid out for the terminal's width
    return Console(soft_wrap=True), Console(stderr=True, soft_wrap=True)


def _ints(text: str, option: str) -> list[int]:
    """Comma-separated positive integers of ``option``; exit 2 naming it otherwise."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise _fail(f"{option}: expected comma-separated positive integers, got {text!r}")
    return values


def _fail(message: str, code: int = 2) -> typer.Exit:
    _consoles()[1].print(f"[bold red]error:[/bold red] {message}", highlight=False)
    return typer.Exit(code)


@contextlib.contextmanager
def _bad_input() -> Iterator[None]:
    """Bad input (the api's InputError, the store's and study files' errors) becomes one
    line on stderr and exit code 2."""
    from normlab.errors import InputError
    from normlab.spec.study import StudyError
    from normlab.store.db import StoreError

    try:
        yield
    except (InputError, StudyError, StoreError) as e:
        option = _OPTIONS.get(getattr(e, "option", None), getattr(e, "option", None))
        raise _fail((f"--{option.replace('_', '-')}: " if option else "") + str(e)) from None


def _execution(db: Path, **where):
    """The ``Execution`` of a command's options (``where``: data_dir, device, threads,
    max_stack, executor, address), with a progress bar on stderr."""
    from normlab.app.execution import Execution
    from normlab.report.console import ProgressObserver

    return Execution(db=db, observer=ProgressObserver(_consoles()[1]), **where)


def _show(summary) -> None:
    """Print a ``StudySummary``."""
    from normlab.report.console import summary_table

    title = f"{summary.study}: reported test metrics over seeds"
    _consoles()[0].print(summary_table(summary, title))


def _finish(failures: list[str], db: Path | None = None) -> None:
    """Say where the results are; list failed units and exit 1 if any."""
    out, err = _consoles()
    if db is not None:
        out.print(f"results in {db}", highlight=False)
    for f in failures:
        err.print(f"[red]failed[/red] {f}", highlight=False)
    if failures:
        raise typer.Exit(1)


@app.command()
def run(
    study_file: Annotated[Path, typer.Argument(help="Study file (TOML).")],
    dry_run: Annotated[bool, Option("--dry-run", help="Print the plan and its cost.")] = False,
    db: Db = Path("normlab.db"),
    data_dir: DataDir = None,
    device: Device = "cpu",
    threads: Threads = None,
    max_stack: MaxStack = 16,
    executor: Executor = "local",
    address: Address = None,
) -> None:
    """Run a study file: the grid's runs, grouped into stacks, skipping finished runs.

    Several processes may run one study on one database at once: they share the work."""
    run = _execution(db, data_dir=data_dir, device=device, threads=threads, max_stack=max_stack,
                     executor=executor, address=address)  # fmt: skip
    with _bad_input():
        from normlab.app import api
        from normlab.report.console import plan_report

        study = api.as_study(study_file)
        if dry_run:
            plan = api.plan_study(study, run)
            _consoles()[0].print(*plan_report(study.name, len(study.configs), plan))
            return
        report = api.run_study(study, run)
        _show(report.summary())
    _finish(report.failures, db)


@app.command()
def reproduce(
    seeds: Annotated[int, Option("--seeds", help="Seeds per configuration.", min=1)] = 3,
    epochs: Annotated[int, Option("--epochs", help="Epochs per run.", min=1)] = 5,
    batch_sizes: Annotated[str, Option("--batch-sizes", help="Comma-separated.")] = "32,64,128,256",
    inputs: Inputs = "raw",
    semantics: Annotated[str, Option("--semantics", help="keras (the seed's) or torch.")] = "keras",
    faithful: Annotated[bool, Option("--faithful", help="Also the notebook as written.")] = False,
    db: Db = Path("normlab.db"),
    data_dir: DataDir = None,
    device: Device = "cpu",
    threads: Threads = None,
    max_stack: MaxStack = 16,
    executor: Executor = "local",
    address: Address = None,
) -> None:
    """The seed notebook's study done right: BN applied vs none × batch sizes × seeds."""
    sizes, started = _ints(batch_sizes, "--batch-sizes"), time.perf_counter()
    run = _execution(db, data_dir=data_dir, device=device, threads=threads, max_stack=max_stack,
                     executor=executor, address=address)  # fmt: skip
    with _bad_input():
        from normlab.app import api
        from normlab.report.console import faithful_table
        from normlab.report.header import duration

        done = api.reproduce(seeds, epochs, sizes, inputs, semantics, faithful, run)
        _show(done.summary)
        if done.faithful:
            _consoles()[0].print(faithful_table(done.studies[1], done.faithful),
                                 "\n" + done.faithful.verdict)  # fmt: skip
    _consoles()[1].print(f"took {duration(time.perf_counter() - started)}", highlight=False)
    _finish(done.failures, db)


@app.command()
def show(db: Db = Path("normlab.db"), study: StudyName = None) -> None:
    """Print the summary table of a study in the database."""
    with _bad_input():
        from normlab.app.reading import summary

        _show(summary(study, db=db))


@app.command()
def export(
    out_file: Annotated[Path, Option("--out", help="File to write.")],
    fmt: Annotated[str, Option("--format", help="csv or parquet.")] = "csv",
    table: Annotated[str, Option("--table", help=_TABLES)] = "epochs",
    db: Db = Path("normlab.db"),
    study: StudyName = None,
) -> None:
    """Write a study's rows (config, metrics, timing, status) to CSV or Parquet."""
    with _bad_input():
        from normlab.app.exporting import export_study

        name, n = export_study(out_file, fmt, table, db=db, study=study)
    _consoles()[0].print(f"wrote {n} {table} rows of study {name} to {out_file}", highlight=False)


@app.command()
def fold(
    epochs: Annotated[int, Option("--epochs", help="Epochs to train first.", min=1)] = 1,
    hidden: Annotated[str, Option("--hidden", help="Comma-separated widths.")] = "512",
    inputs: Inputs = "scaled",
    seed: Annotated[int, Option("--seed", help="Seed of the trained model.")] = 0,
    data_dir: DataDir = None,
    device: Device = "cpu",
    threads: Threads = None,
) -> None:
    """Fold BN into the dense layer before it: prove the outputs equal, time inference.

    Trains the seed network with BN on MNIST, folds it, compares all test outputs, times
    a forward pass without BN, with BN and folded. Exits 1 if the outputs differ."""
    widths, (out, err) = tuple(_ints(hidden, "--hidden")), _consoles()
    with _bad_input():
        from normlab.app import api
        from normlab.report.console import ProgressObserver, fold_lines, latency_table

        r = api.fold(hidden=widths, epochs=epochs, inputs=inputs, seed=seed, data_dir=data_dir,
                     device=device, threads=threads, observer=ProgressObserver(err))  # fmt: skip
    out.print(*fold_lines(r), latency_table(r), sep="\n", highlight=False)
    if not r.identical:
        raise typer.Exit(1)


@app.command()
def claims(
    budget: Budget = "quick",
    only: Only = None,
    model: Model = "mlp",
    dataset: Dataset = "mnist",
    as_json: Annotated[bool, Option("--json", help="Print the verdicts as JSON.")] = False,
    max_seeds: Annotated[int, Option(help="--budget auto: the most seeds per arm.")] = 20,
    db: Db = Path("normlab.db"),
    data_dir: DataDir = None,
    device: Device = "cpu",
    threads: Threads = None,
    max_stack: MaxStack = 16,
    executor: Executor = "local",
    address: Address = None,
) -> None:
    """Judge the seed notebook's claims about BN: run their studies, print verdicts.

    Each claim has a built-in study; what the database holds is reused, so an interrupted
    run resumes. Rules: docs/STATISTICS.md; `normlab report --claims` draws the evidence.
    """
    numbers = _ints(only, "--only") if only else None
    out = _consoles()[0]
    with _bad_input():
        from normlab.app.api import judge_claims
        from normlab.report import console

        run = _execution(db, data_dir=data_dir, device=device, threads=threads,
                         max_stack=max_stack, executor=executor, address=address)  # fmt: skip
        results = judge_claims(numbers, budget, run, model=model, dataset=dataset,
                               max_seeds=max_seeds)  # fmt: skip
    if as_json:
        out.print_json(json.dumps([r.as_json() for r in results]))
    else:
        details = [line for r in results for line in console.claim_details(r)]
        out.print(console.claims_table(results, budget), *details, sep="\n", highlight=False)
    _finish(list(dict.fromkeys(f for r in results for f in r.failures)))


@app.command()
def report(
    db: Db = Path("normlab.db"),
    study: StudyName = None,
    claims: Annotated[bool, Option("--claims", help="The claims' page, not a study's.")] = False,
    budget: Budget = "quick",
    only: Only = None,
    model: Model = "mlp",
    dataset: Dataset = "mnist",
    out: Annotated[Path, Option("--out", help="HTML file to write.")] = Path("report.html"),
    assets: Annotated[Path | None, Option("--assets", help="Folder for SVG/PNG figures.")] = None,
    open_: Annotated[bool, Option("--open", help="Open the page in a browser.")] = False,
    live: Annotated[bool, Option("--live", help="Serve it, following the study.")] = False,
    host: Annotated[str, Option("--host", help="--live: address to serve on.")] = "127.0.0.1",
    port: Annotated[int, Option("--port", help="--live: port (0: any free).", min=0)] = 8765,
) -> None:
    """Write one self-contained HTML page (opens offline) of a study or of the claims.

    Reads the database only: a study still running is reported as far as it went. With
    --live, serves the page on http://HOST:PORT/ instead, rebuilt as the study runs (in
    another process) and updated in the browser; Ctrl-C stops it."""
    ids = _ints(only, "--only") if only else None
    with _bad_input():
        if live:
            from normlab.report.live import live_report

            server = live_report(db, study=study, claims=claims, budget=budget, ids=ids,
                                 model=model, dataset=dataset, host=host, port=port)  # fmt: skip
            note = "" if server.local else ", open to anyone who reaches it"
            _consoles()[0].print(f"live report of {db} at {server.url}{note} (Ctrl-C stops)",
                                 highlight=False)  # fmt: skip
            server.serve(typer.launch if open_ else None)
            return _consoles()[0].print("stopped")
        from normlab.report.build import write_report
        from normlab.report.console import report_lines

        r = write_report(db, study=study, claims=claims, budget=budget, out=out, assets=assets,
                         ids=ids, model=model, dataset=dataset)  # fmt: skip
    _consoles()[0].print("\n".join(report_lines(r)), highlight=False)
    if open_:
        typer.launch(r.path.resolve().as_uri())
