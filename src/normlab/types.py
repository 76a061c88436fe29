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


WHOLE = -1  # a probe row's layer or unit when it describes the whole network or layer
NO_QUANTILE = -1.0  # a probe row's quantile when it is not one of a distribution's


class ProbeRow(NamedTuple):
    """One instrument's value after step ``step``: ``layer`` is ``WHOLE`` for a
    measurement of the whole network; ``unit`` names one unit of the layer (``WHOLE``:
    the layer as a whole) and ``quantile`` (in 0-1) which quantile of that unit's
    values it is (``NO_QUANTILE``: not a quantile). ``value`` is None where it was not
    a number."""

    step: int
    probe: str
    layer: int
    name: str
    value: float | None
    unit: int = WHOLE
    quantile: float = NO_QUANTILE


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


@dataclass(frozen=True)
class StoredRun:
    """One run as the store holds it: its configuration (``config``, canonical JSON;
    the run-config model parses it), where it stands and, once finished, how it went.
    ``progress`` counts the optimizer steps of a running attempt; ``owner`` and
    ``lease_until`` say who trains it until when (``store.leases``)."""

    id: str
    config: str
    cohort: str
    status: Status
    stack_size: int | None = None
    started_at: str | None = None
    finished_at: str | None = None
    seconds: float | None = None
    diverged_step: int | None = None
    error: str | None = None
    environment: str | None = None  # JSON: the machine and threads it trained on
    owner: str | None = None
    lease_until: float | None = None
    attempts: int = 0
    progress: int | None = None


@dataclass(frozen=True)
class StoredStudy:
    """A study as registered: its declaration (``spec``) and when."""

    name: str
    spec: dict[str, object]
    created_at: str
    updated_at: str


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
