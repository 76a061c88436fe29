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
from normlab.types import Status


@dataclass(frozen=True)
class RunRecord:
    """What the analysis reads of one run."""

    config: RunConfig
    status: Status
    epochs: list[dict[str, float]]
    evals: list[dict[str, float]]
    probes: list[dict[str, object]]
    samples: list[dict[str, object]] = field(default_factory=list)  # a generator's images
    run_id: str = ""
    seconds: float | None = None  # this run's share of its stack's wall time
    diverged_step: int | None = None
    error: str | None = None  # why its last attempt failed
    environment: dict[str, object] = field(default_factory=dict)  # where it trained

    @property
    def steps_per_epoch(self) -> int:
        return self.config.steps_per_epoch

    def final(self, metric: str) -> float:
        """The last epoch's ``metric`` (e.g. test_acc); NaN unless the run finished."""
        return self.epochs[-1][metric] if self.status == Status.DONE and self.epochs else math.nan

    def probe(self, probe: str, name: str, step: int | None = None) -> dict[int, list[float]]:
        """One probe value's measurements by layer (NULLs left out), in step order; at
        ``step`` only, if given."""
        out: dict[int, list[float]] = defaultdict(list)
        for row in sorted(self.probes, key=lambda r: r["step"]):
            if (
                row["probe"] == probe
                and row["name"] == name
                and row["value"] is not None
                and (step is None or row["step"] == step)
            ):
                out[int(row["layer"])].append(float(row["value"]))
        return out

    def last(self, probe: str, name: str) -> float:
        """The mean over layers of a probe value's last measurement (NaN if none)."""
        steps = [r["step"] for r in self.probes if r["probe"] == probe and r["name"] == name]
        if not steps:
            return math.nan
        values = [v for vs in self.probe(probe, name, max(steps)).values() for v in vs]
        return float(np.mean(values)) if values else math.nan


def records(store: Store, study: str) -> list[RunRecord]:
    """Every run of ``study`` in study order, with its stored numbers."""
    tables: dict[str, dict[str, list[dict]]] = {}
    for table in ("epochs", "evals", "probes", "samples"):
        tables[table] = defaultdict(list)
        for row in getattr(store, table)(study):
            tables[table][row["run_id"]].append(dict(row))
    return [
        RunRecord(
            RunConfig.from_stored(r["config"]),
            Status(r["status"]),
            *(tables[t][r["id"]] for t in ("epochs", "evals", "probes")),
            samples=tables["samples"][r["id"]],
            run_id=r["id"],
            seconds=r["seconds"],
            diverged_step=r["diverged_step"],
            error=r["error"],
            environment=json.loads(r["environment"]) if r["environment"] else {},
        )
        for r in store.runs(study)
    ]


@dataclass(frozen=True)
class StudyRecord:
    """A study as stored: its declaration (``spec``), when it was registered and last
    updated, and its runs."""

    name: str
    spec: dict[str, object]
    created_at: str
    updated_at: str
    runs: list[RunRecord]


def study_record(store: Store, study: str) -> StudyRecord:
    """``study`` with every run's numbers (``records``)."""
    row = store.study(study)
    return StudyRecord(
        study, json.loads(row["spec"]), row["created_at"], row["updated_at"], records(store, study)
    )


def step_losses(store: Store, study: str) -> dict[str, tuple[list[int], list[float]]]:
    """Per run of ``study``: the kept steps and their training losses (NaN where the
    loss was not finite as a number SQLite keeps)."""
    out: dict[str, tuple[list[int], list[float]]] = defaultdict(lambda: ([], []))
    for row in store.steps(study):
        steps, losses = out[row["run_id"]]
        steps.append(row["step"])
        losses.append(math.nan if row["loss"] is None else row["loss"])
    return dict(out)


def accuracy_curve(run: RunRecord) -> dict[int, float]:
    """Validation accuracy by step, in step order: the evaluations within epochs and at
    each epoch's end (missing or non-finite values left out)."""
    curve = {int(e["step"]): e["val_acc"] for e in run.evals}
    curve.update({int(e["epoch"]) * run.steps_per_epoch: e["val_acc"] for e in run.epochs})
    return {s: a for s, a in sorted(curve.items()) if a is not None and math.isfinite(a)}
