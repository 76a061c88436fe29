"""normlab's application layer: one call each to run a study, judge claims, reproduce
the seed notebook, fold BN.

What the command line does, a notebook (or a worker) does with the same call::

    import normlab
    report = normlab.run_study("examples/bn-small-batches.toml", db="bn.db")
    print(report.summary())                     # per-configuration test metrics
    verdicts = normlab.judge_claims([4], budget="quick", db="bn.db")

Where and how they train is one ``Execution`` (database, data, device, threads, stack
cap, executor, Ray address, observer), given whole or as keywords.

Bad input (a study file, a device, a dataset folder, a database that is not
normlab's) raises ``InputError`` with one line naming what is wrong, before anything
trains. A unit that fails while training is recorded as failed, with its error, and the
others go on: ``StudyReport.failures`` lists them.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Unpack

import torch
from pydantic import ValidationError

from normlab import runtime
from normlab.analysis.faithful import FaithfulComparison, compare
from normlab.analysis.records import records
from normlab.analysis.sequential import Design
from normlab.analysis.summary import StudySummary, summarize
from normlab.app.execution import Execution, ExecutionOptions
from normlab.claims.auto import (
    BASE,
    DEFAULT_CAP,
    auto_name,
    auto_study,
    budget_design,
    judge_auto,
    seeds_wanted,
    sequential,
)
from normlab.claims.claim import ClaimError
from normlab.claims.definitions import CLAIMS, claim_studies, selected
from normlab.claims.judge import ClaimResult, judge, judge_runs, not_applicable
from normlab.data.download import DownloadError
from normlab.data.idx import IdxError
from normlab.data.locate import load
from normlab.data.prepare import prepare
from normlab.errors import InputError
from normlab.experiments import reproduce as procedures
from normlab.experiments.costs import STARTUP_SECONDS, StudyPlan, estimate
from normlab.experiments.driver import Driver, pending_units
from normlab.experiments.errors import open_store
from normlab.experiments.executors import EXECUTORS, Executor, make_executor
from normlab.experiments.fold import FoldReport, fold_config, fold_report
from normlab.experiments.plan import Unit, plan
from normlab.experiments.progress import Observer
from normlab.experiments.runner import DataCache
from normlab.spec.config import first_error
from normlab.spec.settings import Setting
from normlab.spec.study import Study, StudyError, StudySpec, load_study
from normlab.store.db import FINISHED, Store, StoreError
from normlab.store.leases import LEASE_SECONDS, Heartbeat, Owner

# What bad input looks like by the time it is found: each names what is wrong.
_INPUT_ERRORS = (StudyError, StoreError, ClaimError, DownloadError, IdxError, OSError, ValueError)


def _invalid(err: ValidationError) -> InputError:
    option, message = first_error(err)
    return InputError(message, option or None)


@dataclass
class StudyReport:
    """What ``run_study`` did: the study, its runs, and what happened to them."""

    study: str
    db: Path
    runs: int
    finished_before: int
    trained: int = 0
    diverged: int = 0
    by_others: int = 0  # runs other processes sharing the database finished meanwhile
    failures: list[str] = field(default_factory=list)

    def summary(self, factors: list[str] | None = None) -> StudySummary:
        """Final-epoch test metrics per configuration, over seeds (read from the store)."""
        with open_store(self.db) as store:
            return summarize(store, self.study, factors)


def as_study(study: Study | StudySpec | Path | str) -> Study:
    """A study given as a file path, a parsed study file or a ``Study``."""
    try:
        if isinstance(study, str | Path):
            return load_study(study).study(str(study))
        return study.study() if isinstance(study, StudySpec) else study
    except StudyError as err:
        raise InputError(str(err)) from None


def _device(run: Execution, threads: int | None = None) -> torch.device:
    """The execution's device, with ``threads`` (default: its own) CPU threads set."""
    try:
        dev = runtime.resolve_device(run.device)
    except ValueError as err:
        raise InputError(str(err), "device") from None
    runtime.configure(threads or run.threads)
    return dev


def run_study(
    study: Study | StudySpec | Path | str,
    execution: Execution | None = None,
    *,
    lease_seconds: float = LEASE_SECONDS,
    **options: Unpack[ExecutionOptions],
) -> StudyReport:
    """Train what ``study`` still needs and record it in the execution's database.

    Finished runs (from any study in the database) are reused; the rest train in stacks
    (``experiments.plan``) on the executor: ``"local"`` (this process, on the device with
    ``threads`` CPU threads), ``"pool"`` (worker processes here, ``threads`` each, 1 by
    default), ``"ray"`` (Ray tasks of ``threads`` threads each, on a local Ray instance
    or the cluster at ``address``) or an ``Executor``. Each unit's
    results are saved as it finishes, so an interrupted study resumes where it stopped.
    Other processes may run the same study on the same database at the same time: each
    unit is leased to one of them for ``lease_seconds`` at a time, renewed while it
    lives (``store.leases``).
    """
    run = Execution.of(execution, options)
    study = as_study(study)
    dev = _device(run)
    with open_store(run.db) as store, _executor(run, dev) as ex:
        try:
            return _drive(store, study, ex, run.max_stack, dev.type, run.watch, lease_seconds)
        except sqlite3.Error as err:  # a full disk, a file made read-only mid-study
            raise InputError(
                f"{run.db}: cannot write results ({err}); the runs finished so far are kept, "
                "run again to resume"
            ) from None


@contextlib.contextmanager
def _executor(run: Execution, device: torch.device) -> Iterator[Executor]:
    """The execution's executor as given, or the one it names, made here and closed
    after use."""
    if not isinstance(run.executor, str):
        yield run.executor
        return
    made = make_executor(run.executor, device, run.data_dir, run.address, run.threads,
                         run.watch.message)  # fmt: skip
    try:
        yield made
    finally:
        made.close()


def _drive(
    store: Store,
    study: Study,
    executor: Executor,
    max_stack: int,
    device_type: str,
    observer: Observer,
    lease_seconds: float,
) -> StudyReport:
    """``run_study``'s work on an open store: plan, train under leases, tally."""
    store.register_study(study.name, study.spec, study.configs)

    def pending() -> list[Unit]:
        return pending_units(store, study.configs, max_stack, device_type)[0]

    units, finished = pending_units(store, study.configs, max_stack, device_type)
    report = StudyReport(study.name, store.path, len(study.configs), finished)
    if units:
        try:
            executor.prepare(units[0].configs[0])
        except _INPUT_ERRORS as err:
            raise InputError(str(err)) from None
    observer.planned(study.name, len(study.configs), finished, units)
    owner = Owner.this_process()
    driver = Driver(store, executor, owner, lease_seconds, pending, observer)
    try:
        with Heartbeat(store.path, owner, lease_seconds):
            tally = driver.run(units)
    finally:
        observer.done()
        with contextlib.suppress(sqlite3.Error):
            store.release(owner)
    report.trained, report.diverged = tally.trained, tally.diverged
    report.by_others, report.failures = tally.by_others, tally.failures
    return report


def judge_claims(
    ids: Sequence[int] | None = None,
    budget: str = "quick",
    execution: Execution | None = None,
    *,
    model: str = "mlp",
    dataset: str = "mnist",
    max_seeds: int = DEFAULT_CAP,
    **options: Unpack[ExecutionOptions],
) -> list[ClaimResult]:
    """Run the built-in study of each claim in ``ids`` (default: all; a claim brings its
    parts) at ``budget`` with ``model`` on ``dataset``, then judge it from the database;
    one result per claim, in order (a claim that does not apply to the setting says
    so). Runs already in the database are reused, so an interrupted call resumes. The
    studies train as ``run_study`` trains them, on one executor.

    ``budget="auto"`` runs a sequential design instead (``claims.auto``): rounds of
    fresh seeds until each claim is decided or has ``max_seeds`` seeds per arm."""
    run = Execution.of(execution, options)
    design = budget_design(budget, max_seeds)
    wanted = selected(list(ids) if ids is not None else list(CLAIMS))
    setting = Setting(model, dataset)
    if design is not None:
        fixed = [n for n in wanted if not sequential(CLAIMS[n])]
        with _executor(run, _device(run)) as ex:
            shared = replace(run, executor=ex)
            results = _auto_claims([n for n in wanted if n not in fixed], setting, design, shared)
            if fixed:  # GAN claims keep their quick design (claims.auto says why)
                results += judge_claims(fixed, BASE, shared, model=model, dataset=dataset)
        return sorted(results, key=lambda r: wanted.index(r.id))
    try:
        studies = {n: spec.study() for n, spec in claim_studies(wanted, budget, setting).items()}
    except (ClaimError, StudyError) as err:
        raise InputError(str(err)) from None
    reports: dict[str, StudyReport] = {}
    with _executor(run, _device(run)) as ex:
        shared = replace(run, executor=ex)
        for study in studies.values():  # a study two claims share is run once
            if study.name not in reports:
                reports[study.name] = run_study(study, shared)
    results = []
    for n in wanted:
        if n not in studies:
            results.append(not_applicable(CLAIMS[n], setting))
            continue
        with open_store(run.db) as store:
            result = judge(store, CLAIMS[n], studies[n].name)
        result.failures.extend(reports[studies[n].name].failures)
        results.append(result)
    return results


def _auto_claims(
    wanted: list[int], setting: Setting, design: Design, run: Execution
) -> list[ClaimResult]:
    """``judge_claims`` at the auto budget: each round judges every claim from what the
    database holds, then trains the next look's seeds of every claim still open at once
    (one study of all their runs, so that stacks fill across claims)."""
    claims = [CLAIMS[n] for n in wanted if not CLAIMS[n].not_applicable(setting)]
    failures: list[str] = []
    for round_ in itertools.count(1):
        with open_store(run.db) as store:
            names = {c.id: auto_name(c, setting, design) for c in claims}
            known = set(store.study_names())
            results = {c.id: judge_auto(c, records(store, names[c.id]), design)
                       if names[c.id] in known else None for c in claims}  # fmt: skip
        wants = {c.id: seeds_wanted(results[c.id], design) for c in claims}
        studies: dict[str, Study] = {}
        for c in (c for c in claims if wants[c.id]):
            spec = auto_study(c, setting, design, wants[c.id])
            if len(studies.get(spec.name, Study("", {}, [])).configs) < len(spec.runs()):
                studies[spec.name] = spec.study()  # claims sharing a study: the most seeds
        if not studies or failures:  # a failed run leaves its look incomplete: stop there
            break
        run.watch.message(f"round {round_}: " + ", ".join(
            f"claim {c.id} to {wants[c.id]} seeds" for c in claims if wants[c.id]))
        with open_store(run.db) as store:
            for study in studies.values():
                store.register_study(study.name, study.spec, study.configs)
        configs = list({c.run_id: c for s in studies.values() for c in s.configs}.values())
        slug = setting.label.lower().replace("/", "-")
        failures += run_study(Study(f"claims-auto{design.cap}-{slug}", {"round": round_},
                                    configs), run).failures  # fmt: skip
    out = []
    for n in wanted:
        if CLAIMS[n].not_applicable(setting):
            out.append(not_applicable(CLAIMS[n], setting))
            continue
        result = results[n] or judge_runs(CLAIMS[n], [])  # its first look never completed
        result.failures.extend(failures)
        out.append(result)
    return out


def plan_study(
    study: Study | StudySpec | Path | str,
    execution: Execution | None = None,
    *,
    measure: bool = True,
    **options: Unpack[ExecutionOptions],
) -> StudyPlan:
    """The units ``study`` trains in on the execution's device, which of its runs its
    database holds finished already and, if ``measure``, the time the rest would take
    on its executor (named: local, pool or ray) (``costs.estimate``: each kind of unit
    timed for a few steps, with ``threads`` threads; the pool and Ray on this machine's
    cores). A dry run: nothing is recorded, and a missing database stays missing."""
    run = Execution.of(execution, options)
    study = as_study(study)
    if run.executor not in EXECUTORS:
        raise InputError(
            f"executor {run.executor!r} is not one of {', '.join(EXECUTORS)}", "executor"
        )
    parallel = run.executor != "local"  # the pool and Ray: 1 thread per unit by default
    threads = run.threads or 1 if parallel else run.threads
    dev = _device(run, threads)
    result = StudyPlan(plan(study.configs, run.max_stack, dev.type), set(), str(run.executor))
    if Path(run.db).exists():
        with open_store(run.db) as store:
            statuses = store.statuses(c.run_id for c in study.configs)
        result.done = {r for r, status in statuses.items() if status in FINISHED}
    if measure and result.pending:
        log = run.watch.message
        slots = max(1, (os.cpu_count() or 1) // (threads or 1)) if parallel else 1
        try:
            startup = STARTUP_SECONDS[str(run.executor)]
            data = DataCache(run.data_dir, dev, log)
            result.estimate = estimate(result.pending, data, slots, log, startup)
        except _INPUT_ERRORS as err:
            raise InputError(str(err)) from None
    return result


def fold(
    *,
    hidden: Sequence[int] = (512,),
    epochs: int = 1,
    inputs: str = "scaled",
    seed: int = 0,
    execution: Execution | None = None,
    **options: Unpack[ExecutionOptions],
) -> FoldReport:
    """Train the seed network with BN on MNIST, fold BN into the dense layer before it,
    compare the outputs on all test images and time inference (``normlab fold``), on
    the execution's device with its data."""
    run = Execution.of(execution, options)
    try:
        config = fold_config(hidden, epochs, inputs, seed)
    except ValidationError as err:
        raise _invalid(err) from None
    dev = _device(run)
    run.watch.message(
        f"training a BN network {tuple(hidden)} for {epochs} epoch(s) on MNIST ({inputs})"
    )
    try:
        splits = prepare(load(config.dataset, run.data_dir), config.inputs, device=dev)
    except _INPUT_ERRORS as err:
        raise InputError(str(err)) from None
    return fold_report(config, splits)


def reproduce_studies(
    seeds: int = 3,
    epochs: int = 5,
    batch_sizes: Sequence[int] = procedures.SEED_BATCH_SIZES,
    inputs: str = "raw",
    semantics: str = "keras",
    faithful: bool = False,
) -> list[Study]:
    """The seed notebook's study done right (``reproduce.corrected``) and, if
    ``faithful``, the notebook as written (``reproduce.faithful``), as ``reproduce``
    runs them."""
    try:
        studies = [procedures.corrected(seeds, epochs, batch_sizes, inputs, semantics)]
        if faithful:
            studies.append(procedures.faithful(inputs, semantics))
    except ValidationError as err:
        raise _invalid(err) from None
    return studies


@dataclass
class Reproduction:
    """What ``reproduce`` did and found: its studies (the corrected one, then the
    notebook as written if asked for) and each one's report, the corrected study's
    summary by norm and batch size, and (``faithful``) the notebook as written set
    beside it."""

    studies: list[Study]
    reports: list[StudyReport]
    summary: StudySummary
    faithful: FaithfulComparison | None = None

    @property
    def failures(self) -> list[str]:
        """The units that failed, over all studies."""
        return [f for r in self.reports for f in r.failures]


def reproduce(
    seeds: int = 3,
    epochs: int = 5,
    batch_sizes: Sequence[int] = procedures.SEED_BATCH_SIZES,
    inputs: str = "raw",
    semantics: str = "keras",
    faithful: bool = False,
    execution: Execution | None = None,
    **options: Unpack[ExecutionOptions],
) -> Reproduction:
    """The seed notebook's study done right, BN applied against none at each batch size
    over ``seeds`` (``normlab reproduce``), and with ``faithful`` the notebook as it
    ran: train what the database lacks, then read the results back."""
    run = Execution.of(execution, options)
    studies = reproduce_studies(seeds, epochs, batch_sizes, inputs, semantics, faithful)
    reports = [run_study(study, run) for study in studies]
    with open_store(run.db) as store:
        summary = summarize(store, studies[0].name, ["norm", "batch_size"])
        notebook = compare(store, studies[1]) if faithful else None
    return Reproduction(studies, reports, summary, notebook)
