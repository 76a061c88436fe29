"""The results contract: what training produces and the store records, by name.

Plain Python, no torch: the store, the analysis and the reports read these without
importing the trainer. Rows that come in thousands (per-step losses, probe values,
evaluations) are named tuples.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple, Protocol


class Status(StrEnum):
    """A run's status in the store (equal to the string stored)."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    DIVERGED = "diverged"
    FAILED = "failed"


FINISHED = (Status.DONE, Status.DIVERGED)  # statuses of a run that has its outcome


@dataclass(frozen=True)
class EpochMetrics:
    """One run's numbers for one epoch.

    ``train_loss``/``train_acc`` average the epoch's training steps (train mode, as
    Keras's ``fit`` reports them); val and test are evaluated after the epoch in eval
    mode (running statistics, no dropout). ``seconds`` is this run's share of its
    stack's wall time for the epoch (training and evaluation), ``eval_seconds`` the
    evaluation part of it.
    """

    epoch: int
    train_loss: float
    train_acc: float
    val_loss: float
    val_acc: float
    test_loss: float
    test_acc: float
    seconds: float
    eval_seconds: float


class StepLoss(NamedTuple):
    """The training loss (train mode, this step's batch) after optimizer step ``step``."""

    step: int
    loss: float


class ProbeRow(NamedTuple):
    """One instrument's value: ``layer`` -1 for a measurement of the whole network."""

    step: int
    probe: str
    layer: int
    name: str
    value: float


class EvalPoint(NamedTuple):
    """A validation evaluation within an epoch: ``epoch`` is fractional, ``seconds``
    this run's share of the training time so far (probes and evaluations excluded)."""

    step: int
    epoch: float
    seconds: float
    val_loss: float
    val_acc: float


class SampleImage(NamedTuple):
    """One image a generator drew after step ``step``: ``pixels`` are ``channels`` × 28 ×
    28 bytes (0-255, channel-major), the ``index``-th of the images kept."""

    step: int
    index: int
    channels: int
    pixels: bytes


@dataclass
class RunResult:
    """Everything one run's training produced."""

    epochs: list[EpochMetrics] = field(default_factory=list)
    step_losses: list[StepLoss] = field(default_factory=list)
    probes: list[ProbeRow] = field(default_factory=list)
    evals: list[EvalPoint] = field(default_factory=list)
    samples: list[SampleImage] = field(default_factory=list)
    diverged_step: int | None = None
    seconds: float = 0.0

    @property
    def diverged(self) -> bool:
        return self.diverged_step is not None


class RunIdentity(Protocol):
    """What the store needs of a run's configuration (``RunConfig`` is one)."""

    @property
    def run_id(self) -> str: ...

    @property
    def cohort_key(self) -> str: ...

    def model_dump_json(self) -> str: ...
