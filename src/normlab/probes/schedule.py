"""Which instruments a run records, when, and on what data: hooks of the loop.

An instrument is a class with a ``name``, a ``when`` and ``measure(context)``; it yields
``Measurement``s (or plain ``(layer, name, values [K])``) for every member of the stack
at once (layer -1 for the whole network), and ``Images`` if it keeps pictures. When:

- ``STEPS``: after the first step (the gradients at initialization), every ``every``
  steps and after the last, between the step's backward pass and its update;
- ``LAST_STEP``: the same, after the last step only;
- ``END``: after the last step's update, on the trained network (the GAN's judging).

``probe_hooks`` makes a ``ProbeSet`` hook for the first two and one for the last; each
files the values as rows of the members that are still active.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import ClassVar, NamedTuple, Protocol

import torch

from normlab.data.prepare import Split
from normlab.models.stack import StackedModel
from normlab.registry import load
from normlab.spec.config import RunConfig
from normlab.spec.probes import PROBES
from normlab.train.loop import StackRun
from normlab.train.optim import Optimizer, OptimizerState, Rates
from normlab.train.step import Batch
from normlab.types import NO_QUANTILE, WHOLE, ProbeRow, SampleImage

PROBE_EXAMPLES = 512  # held-out examples the activation and BN probes look at
PRECISE_BATCHES = 20  # training batches whose statistics precise BN averages


class When(Enum):
    """When an instrument measures (the module's docstring says what each means)."""

    STEPS = "steps"
    LAST_STEP = "last step"
    END = "end"


Classifier = Callable[[torch.Tensor], torch.Tensor]  # 28×28 images [N, 784] -> digits [N]


@dataclass(frozen=True)
class ProbeContext:
    """What an instrument may look at: the stack and its optimizer (before this step's
    update, unless it measures at the ``END``), the step's batch and gradients (None
    at the ``END``), the run's ``config`` (if given), fixed data: the first ``PROBE_EXAMPLES``
    held-out examples (the same at every measurement, in batches of ``batch_size``)
    and the first ``PRECISE_BATCHES`` training batches; and the reference MNIST
    ``classify`` (a generative family's runs only)."""

    step: int
    model: StackedModel
    optimizer: Optimizer
    opt_state: OptimizerState
    rates: Rates
    batch: Batch | None
    held_out: Split
    train_head: Split
    batch_size: int
    train_batch: int
    config: RunConfig | None
    classify: Classifier | None

    def weight_grads(self) -> list[torch.Tensor]:
        """The gradients of each layer's weights, in layer order."""
        by_id = {id(p): g for p, g in zip(self.model.parameters(), self.batch.grads, strict=True)}
        return [by_id[id(w)] for w in self.model.weights]


class Measurement(NamedTuple):
    """One value of every member [K]: ``layer`` (``WHOLE``: the network), and, for a
    value of one unit, the ``unit`` and which ``quantile`` of its values it is."""

    layer: int
    name: str
    values: torch.Tensor
    unit: int = WHOLE
    quantile: float = NO_QUANTILE


class Images(NamedTuple):
    """Pictures an instrument keeps: ``pixels`` [K, n, channels·784] in [0, 1]."""

    channels: int
    pixels: torch.Tensor


class Probe(Protocol):
    """One instrument: its ``name`` (the probe rows'), ``when`` it measures, and what."""

    name: ClassVar[str]
    when: ClassVar[When]

    def measure(self, context: ProbeContext) -> Iterable[Measurement | Images]: ...


def probe_hooks(
    names: Sequence[str],
    config: RunConfig,
    held_out: Split,
    train: Split,
    classify: Classifier | None = None,
) -> list[ProbeSet]:
    """The hooks that record the instruments ``names`` (see ``normlab.probes``) for a
    run of ``config``: one after the last update and one inside the step, as needed."""
    at_end = {n: load(PROBES[n].target).when is When.END for n in names}
    args = (config.probe_every, held_out, config.batch_size, train)
    return [ProbeSet([n for n in names if at_end[n] == end], *args, config=config,
                     classify=classify, inside_step=not end)
            for end in (True, False) if any(at_end[n] == end for n in names)]  # fmt: skip


class ProbeSet:
    """The instruments ``names``, measured when due (every ``every`` steps); a hook of
    ``train.loop``, inside the step or after it (the ``END`` instruments). ``config``
    and ``classify``: what the instruments that read them see."""

    instrument = True

    def __init__(
        self,
        names: Sequence[str],
        every: int,
        held_out: Split,
        batch_size: int,
        train: Split,
        *,
        config: RunConfig | None = None,
        classify: Classifier | None = None,
        inside_step: bool = True,
    ) -> None:
        self.probes: list[Probe] = [load(PROBES[name].target)() for name in names]
        self.every, self.inside_step = every, inside_step
        self.config, self.classify = config, classify
        self.held_out = Split(held_out.x[:PROBE_EXAMPLES], held_out.y[:PROBE_EXAMPLES])
        self.batch_size = min(batch_size, len(self.held_out))
        n = min(len(train), PRECISE_BATCHES * batch_size)
        self.train, self.train_batch = Split(train.x[:n], train.y[:n]), min(batch_size, n)

    def due(self, step: int, end_of_epoch: bool = False, end_of_run: bool = False) -> bool:
        """Whether any instrument measures after training step ``step`` (1-based)."""
        return any(self._due(p, step, end_of_run) for p in self.probes)

    def _due(self, probe: Probe, step: int, end_of_run: bool) -> bool:
        if probe.when is not When.STEPS:
            return end_of_run
        return step == 1 or step % self.every == 0 or end_of_run

    def __call__(self, run: StackRun, batch: Batch | None) -> None:
        end_of_run = run.step == run.total_steps
        rows = self.measure(run.step, run, batch, end_of_run)
        for m, on in enumerate(run.active()):
            if on:
                result = run.results[m]
                for row in rows[m]:
                    (result.samples if isinstance(row, SampleImage) else result.probes).append(row)

    def measure(
        self, step: int, run: StackRun, batch: Batch | None, end_of_run: bool = False
    ) -> list[list[ProbeRow | SampleImage]]:
        """Every due instrument's values at ``step``: one list of rows per member."""
        context = ProbeContext(
            step, run.model, run.optimizer, run.opt_state[0], run.rates, batch,
            self.held_out, self.train, self.batch_size, self.train_batch, self.config,
            self.classify,
        )  # fmt: skip
        rows: list[list[ProbeRow | SampleImage]] = [[] for _ in range(run.model.k)]
        for probe in self.probes:
            if not self._due(probe, step, end_of_run):
                continue
            for item in probe.measure(context):
                for member, filed in enumerate(_filed(step, probe.name, item)):
                    rows[member] += filed
        return rows


def _filed(
    step: int, probe: str, item: Measurement | Images | tuple
) -> list[list[ProbeRow | SampleImage]]:
    """What one instrument said at ``step``, as each member's rows."""
    if isinstance(item, Images):
        return [[SampleImage(step, i, item.channels, image_bytes(image))
                 for i, image in enumerate(images)] for images in item.pixels]  # fmt: skip
    m = Measurement(*item)  # a plain (layer, name, values) too
    return [[ProbeRow(step, probe, m.layer, m.name, v, m.unit, m.quantile)]
            for v in m.values.tolist()]  # fmt: skip


def image_bytes(image: torch.Tensor) -> bytes:
    """An image in [0, 1] as bytes 0-255."""
    return (image.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy().tobytes()
