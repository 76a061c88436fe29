"""Which instruments a run records, when, and on what data: one hook of the loop.

An instrument is a class with a ``name`` and ``measure(context)``; it yields
``(layer, name, values [K])`` for every member of the stack at once (layer -1 for the
whole network). ``ProbeSet`` measures the run's instruments after the first step (the
gradients at initialization), every ``every`` steps and after the run's last step,
between the step's backward pass and its update, and files the values as rows of the
members that are still active.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol

import torch

from normlab.data.prepare import Split
from normlab.models.stack import StackedModel
from normlab.registry import load
from normlab.spec.probes import PROBES
from normlab.train.loop import StackRun
from normlab.train.optim import Optimizer, OptimizerState, Rates
from normlab.train.step import Batch
from normlab.types import ProbeRow

PROBE_EXAMPLES = 512  # held-out examples the activation and BN probes look at
PRECISE_BATCHES = 20  # training batches whose statistics precise BN averages
WHOLE_NETWORK = -1  # the layer recorded for measurements of the whole network


@dataclass(frozen=True)
class ProbeContext:
    """What an instrument may look at: the stack and its optimizer before this step's
    update, the step's batch and gradients, and fixed data: the first
    ``PROBE_EXAMPLES`` held-out examples (the same at every measurement, in batches of
    ``batch_size``) and the first ``PRECISE_BATCHES`` training batches."""

    step: int
    model: StackedModel
    optimizer: Optimizer
    opt_state: OptimizerState
    rates: Rates
    batch: Batch
    held_out: Split
    train_head: Split
    batch_size: int
    train_batch: int

    def weight_grads(self) -> list[torch.Tensor]:
        """The gradients of each layer's weights, in layer order."""
        by_id = {id(p): g for p, g in zip(self.model.parameters(), self.batch.grads, strict=True)}
        return [by_id[id(w)] for w in self.model.weights]


Measurement = tuple[int, str, torch.Tensor]  # (layer, name, values [K])


class Probe(Protocol):
    """One instrument. ``at_end_only`` instruments measure after a run's last step only."""

    name: ClassVar[str]
    at_end_only: ClassVar[bool]

    def measure(self, context: ProbeContext) -> Iterable[Measurement]: ...


class ProbeSet:
    """The instruments ``names`` (see ``normlab.probes``), measured every ``every`` steps;
    a hook of ``train.loop``."""

    inside_step = True
    instrument = True

    def __init__(
        self, names: Sequence[str], every: int, held_out: Split, batch_size: int, train: Split
    ) -> None:
        self.probes: list[Probe] = [load(PROBES[name])() for name in names]
        self.every = every
        self.held_out = Split(held_out.x[:PROBE_EXAMPLES], held_out.y[:PROBE_EXAMPLES])
        self.batch_size = min(batch_size, len(self.held_out))
        n = min(len(train), PRECISE_BATCHES * batch_size)
        self.train, self.train_batch = Split(train.x[:n], train.y[:n]), min(batch_size, n)

    def due(self, step: int, end_of_epoch: bool = False, end_of_run: bool = False) -> bool:
        """Whether any instrument measures after training step ``step`` (1-based)."""
        return any(self._due(p, step, end_of_run) for p in self.probes)

    def _due(self, probe: Probe, step: int, end_of_run: bool) -> bool:
        if probe.at_end_only:
            return end_of_run
        return step == 1 or step % self.every == 0 or end_of_run

    def __call__(self, run: StackRun, batch: Batch | None) -> None:
        end_of_run = run.step == run.total_steps
        rows = self.measure(run.step, run, batch, end_of_run)
        for m, on in enumerate(run.active()):
            if on:
                run.results[m].probes.extend(rows[m])

    def measure(
        self, step: int, run: StackRun, batch: Batch, end_of_run: bool = False
    ) -> list[list[ProbeRow]]:
        """Every due instrument's values at ``step``: one list of rows per member."""
        context = ProbeContext(
            step, run.model, run.optimizer, run.opt_state[0], run.rates, batch,
            self.held_out, self.train, self.batch_size, self.train_batch,
        )  # fmt: skip
        rows: list[list[ProbeRow]] = [[] for _ in range(run.model.k)]
        for probe in self.probes:
            if not self._due(probe, step, end_of_run):
                continue
            for layer, name, values in probe.measure(context):
                for member, value in enumerate(values.tolist()):
                    rows[member].append(ProbeRow(step, probe.name, layer, name, value))
        return rows
