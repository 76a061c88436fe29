"""Which instruments a run records, when, and on what data: the loop's one entry point."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from normlab.data.prepare import Split
from normlab.models.norms import BatchNorm
from normlab.models.stack import StackedMLP
from normlab.probes.bn import discrepancy, precise_statistics, variance_shift
from normlab.probes.ics import internal_covariate_shift
from normlab.probes.layers import layer_norms, preactivation_stats
from normlab.probes.smoothness import smoothness

if TYPE_CHECKING:
    from normlab.train.optim import AdamState, Optimizer, SGDState

PROBE_EXAMPLES = 512  # held-out examples the activation and BN probes look at
PRECISE_BATCHES = 20  # training batches whose statistics precise BN averages
WHOLE_NETWORK = -1  # the layer recorded for measurements of the whole network

# One measurement of one member: (step, probe, layer, name, value).
Row = tuple[int, str, int, str, float]


class ProbeSet:
    """The probes ``names`` (see ``normlab.probes``), measured every ``every`` steps.

    The activation and BN probes use the first ``PROBE_EXAMPLES`` examples of
    ``held_out`` (the validation split), the same at every measurement; the gradient
    probes use the training step's own batch and dropout masks. For networks with BN
    the ``bn`` probe also evaluates a copy whose running statistics precise BN
    recomputed from the first ``PRECISE_BATCHES`` batches of ``train``. Measurements
    are taken after the step's backward pass and before its update, so step 1's are
    those of the initial weights.
    """

    def __init__(
        self, names: Sequence[str], every: int, held_out: Split, batch_size: int, train: Split
    ) -> None:
        self.names, self.every = tuple(names), every
        self.held_out = Split(held_out.x[:PROBE_EXAMPLES], held_out.y[:PROBE_EXAMPLES])
        self.batch_size = min(batch_size, len(self.held_out))
        n = min(len(train), PRECISE_BATCHES * batch_size)
        self.train, self.train_batch = Split(train.x[:n], train.y[:n]), min(batch_size, n)

    def due(self, step: int, last: bool = False) -> bool:
        """Whether the probes measure after training step ``step`` (1-based): the first
        step (its gradients are those at initialization), every ``every``-th, and the
        ``last`` of the run."""
        return bool(self.names) and (step == 1 or step % self.every == 0 or last)

    def measure(
        self,
        step: int,
        model: StackedMLP,
        optimizer: Optimizer,
        opt_state: AdamState | SGDState,
        batch: tuple[torch.Tensor, torch.Tensor, np.ndarray | None],
        lrs: Sequence[float],
    ) -> list[list[Row]]:
        """Every probe's values at ``step``: one list of rows per member."""
        rows: list[list[Row]] = [[] for _ in range(model.k)]

        def add(probe: str, layer: int, name: str, values: torch.Tensor) -> None:
            for member, value in enumerate(values.tolist()):
                rows[member].append((step, probe, layer, name, value))

        x, y, keys = batch
        if "layers" in self.names:
            for name, per_layer in layer_norms(model).items():
                for layer, values in enumerate(per_layer):
                    add("layers", layer, name, values)
        if "activations" in self.names:
            for layer, stats in enumerate(preactivation_stats(model, self.held_out.x)):
                for name in ("mean", "std", "dead", "saturated"):
                    if name in stats:
                        add("activations", layer, name, stats[name])
                for u, unit in enumerate(stats["units"].tolist()):
                    for q, pct in zip((15, 50, 85), stats["percentiles"][:, u].T, strict=True):
                        add("activations", layer, f"p{q}_unit{unit}", pct)
        if "ics" in self.names:
            ics = internal_covariate_shift(model, optimizer, opt_state, x, y, keys, lrs)
            for name, per_layer in ics.items():
                for layer, values in enumerate(per_layer):
                    add("ics", layer, name, values)
        if "smoothness" in self.names:
            for name, values in smoothness(model, x, y, keys, lrs).items():
                add("smoothness", WHOLE_NETWORK, name, values)
        if "bn" in self.names:
            for name, values in discrepancy(model, self.held_out, self.batch_size).items():
                add("bn", WHOLE_NETWORK, name, values)
            if any(isinstance(n, BatchNorm) for n in model.norms):
                for layer, values in enumerate(variance_shift(model, self.held_out.x)):
                    add("bn", layer, "variance_shift", values)
                recalibrated = copy.deepcopy(model)
                precise_statistics(recalibrated, self.train, self.train_batch, PRECISE_BATCHES)
                precise = discrepancy(recalibrated, self.held_out, self.batch_size)
                add("bn", WHOLE_NETWORK, "precise_loss", precise["running_loss"])
                add("bn", WHOLE_NETWORK, "precise_acc", precise["running_acc"])
        return rows
