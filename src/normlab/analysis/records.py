"""Stored runs as the analysis reads them: each run's configuration (parsed through the
run-config model, so a run recorded before a field existed reads with its default),
status, and its epochs, evaluations and probe values."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from normlab.spec.config import RunConfig
from normlab.store.db import Store
from normlab.types import (
    EpochMetrics,
    EvalPoint,
    ProbeRow,
    SampleImage,
    Status,
    StoredRun,
    StoredStudy,
)


@dataclass(frozen=True)
class RunRecord:
    """What the analysis reads of one run."""

    config: RunConfig
    status: Status
    epochs: list[EpochMetrics]
    evals: list[EvalPoint]
    probes: list[ProbeRow]
    samples: list[SampleImage] = field(default_factory=list)  # a generator's images
    run_id: str = ""
    seconds: float | None = None  # this run's share of its stack's wall time
    diverged_step: int | None = None
    error: str | None = None  # why its last attempt failed
    environment: dict[str, object] = field(default_factory=dict)  # where it trained

    @property
    def steps_per_epoch(self) -> int:
        return self.config.steps_per_epoch

    @property
    def reported(self) -> EpochMetrics | None:
        """The epoch a finished run reports (None unless it finished): its last, or for a
        run stopped at a validation plateau (``patience``) the epoch of its best
        validation accuracy, the first among equals. That epoch's test accuracy was
        measured on the weights of then: it is the best-validation checkpoint's."""
        if self.status != Status.DONE or not self.epochs:
            return None
        if not self.config.patience:
            return self.epochs[-1]
        return max(self.epochs, key=lambda e: (e.val_acc, -e.epoch))

    def final(self, metric: str) -> float:
        """The reported epoch's ``metric`` (e.g. test_acc); NaN unless the run finished."""
        epoch = self.reported
        return getattr(epoch, metric) if epoch is not None else math.nan

    def probe(self, probe: str, name: str, step: int | None = None) -> dict[int, list[float]]:
        """One probe value's measurements by layer (NULLs left out), in step order; at
        ``step`` only, if given."""
        out: dict[int, list[float]] = defaultdict(list)
        for row in sorted(self.probes, key=lambda r: r.step):
            if (
                row.probe == probe
                and row.name == name
                and row.value is not None
                and (step is None or row.step == step)
            ):
                out[row.layer].append(float(row.value))
        return out

    def last(self, probe: str, name: str) -> float:
        """The mean over layers of a probe value's last measurement (NaN if none)."""
        steps = [r.step for r in self.probes if r.probe == probe and r.name == name]
        if not steps:
            return math.nan
        values = [v for vs in self.probe(probe, name, max(steps)).values() for v in vs]
        return float(np.mean(values)) if values else math.nan


def records(store: Store, study: str) -> list[RunRecord]:
    """Every run of ``study`` in study order, with its stored numbers."""
    epochs, evals = store.epochs(study), store.evals(study)
    probes, samples = store.probes(study), store.samples(study)
    return [
        run_record(r, epochs.get(r.id, []), evals.get(r.id, []), probes.get(r.id, []),
                   samples.get(r.id, []))
        for r in store.runs(study)
    ]  # fmt: skip


def run_record(
    run: StoredRun,
    epochs: list[EpochMetrics],
    evals: list[EvalPoint],
    probes: list[ProbeRow],
    samples: list[SampleImage],
) -> RunRecord:
    """A stored run with its numbers, its configuration parsed."""
    return RunRecord(
        RunConfig.from_stored(run.config),
        run.status,
        epochs,
        evals,
        probes,
        samples=samples,
        run_id=run.id,
        seconds=run.seconds,
        diverged_step=run.diverged_step,
        error=run.error,
        environment=json.loads(run.environment) if run.environment else {},
    )


@dataclass(frozen=True)
class StudyRecord(StoredStudy):
    """A study as stored: its declaration (``spec``), when it was registered and last
    updated, and its runs."""

    runs: list[RunRecord] = field(default_factory=list)


def study_record(store: Store, study: str) -> StudyRecord:
    """``study`` with every run's numbers (``records``)."""
    s = store.study(study)
    return StudyRecord(s.name, s.spec, s.created_at, s.updated_at, records(store, study))


def step_losses(store: Store, study: str) -> dict[str, tuple[list[int], list[float]]]:
    """Per run of ``study``: the kept steps and their training losses (NaN where the
    loss was not finite as a number SQLite keeps)."""
    return {
        run_id: ([r.step for r in rows], [math.nan if r.loss is None else r.loss for r in rows])
        for run_id, rows in store.steps(study).items()
    }


def accuracy_curve(run: RunRecord) -> dict[int, float]:
    """Validation accuracy by step, in step order: the evaluations within epochs and at
    each epoch's end (missing or non-finite values left out)."""
    curve = {e.step: e.val_acc for e in run.evals}
    curve.update({e.epoch * run.steps_per_epoch: e.val_acc for e in run.epochs})
    return {s: a for s, a in sorted(curve.items()) if a is not None and math.isfinite(a)}
