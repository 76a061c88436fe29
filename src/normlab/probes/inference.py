"""BN at inference: folded away (``StackedModel.fold``), its outputs compared, and the
latency of one model with and without it.

In eval mode BN is a per-unit affine map of running statistics, so folding it into the
layer before it computes the same function with one elementwise pass fewer per hidden
layer. The instrument measures, after a run's last step, for each member alone: the
largest output difference folding made (relative to the largest logit: float rounding
only, if folding is right) and the median latency of one forward pass with BN and with
BN folded, at inference batches of 1 and 256 held-out examples.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterable

import torch

from normlab.models.stack import StackedModel
from normlab.probes.schedule import Measurement, ProbeContext, When
from normlab.runtime import synchronize
from normlab.types import WHOLE

LATENCY_BATCHES = (1, 256)
REPEATS = 200  # forward passes timed per model and batch; the median is kept


@torch.no_grad()
def output_difference(
    model: StackedModel, folded: StackedModel, x: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per member [K]: the largest |logit difference| between ``model`` (eval mode) and
    ``folded`` on the shared inputs ``x``, and the largest |logit| of ``model``."""
    was_training = model.training
    model.eval()
    want, got = model(x), folded(x)
    model.train(was_training)
    return (got - want).abs().flatten(1).amax(1), want.abs().flatten(1).amax(1)


@torch.no_grad()
def latency(model: StackedModel, x: torch.Tensor, repeats: int = REPEATS) -> float:
    """Median seconds of one eval-mode forward pass of ``model`` on ``x`` (the device
    synchronized around each, so a GPU's queued work is timed, not its queueing)."""
    was_training = model.training
    model.eval()
    model(x)
    times = []
    for _ in range(repeats):
        synchronize(x.device)
        start = time.perf_counter()
        model(x)
        synchronize(x.device)
        times.append(time.perf_counter() - start)
    model.train(was_training)
    return statistics.median(times)


class InferenceProbe:
    """``inference``: BN folded and timed, after a run's last step. Values: ``fold_diff``
    (largest |logit difference| over the largest |logit|) and ``latency_bn_b<n>`` /
    ``latency_folded_b<n>`` (seconds per forward pass of one model, batch n)."""

    name = "inference"
    when = When.LAST_STEP

    def measure(self, context: ProbeContext) -> Iterable[Measurement]:
        model, x = context.model, context.held_out.x
        folded = model.fold()
        diff, largest = output_difference(model, folded, x)
        yield WHOLE, "fold_diff", diff / largest.clamp(min=1.0)
        for b in LATENCY_BATCHES:
            for name, stack in (("bn", model), ("folded", folded)):
                seconds = [latency(stack.member(m), x[:b]) for m in range(model.k)]
                yield WHOLE, f"latency_{name}_b{b}", torch.tensor(seconds)
