"""Running statistics recomputed for the weights at hand ("precise BN").

In training BN normalizes by the batch's statistics; at inference by running averages
of them, which lag behind the weights (with Keras's momentum 0.99, for hundreds of
steps). ``precise_statistics`` replaces the running averages by the plain average of the
batch statistics of many training batches with the weights fixed and dropout off (the
"precise BN" of Wu & Johnson 2021, "Rethinking 'Batch' in BatchNorm"); the ``bn``
probe measures what it changes, and a run with ``evaluation = "precise"`` is evaluated
with it.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

from normlab.data.prepare import Split
from normlab.models.stack import StackedModel

# Training examples the statistics of a precise evaluation average over (Wu & Johnson
# find about 10^4 enough; in whole batches of the run's size, at least 20 of them).
PRECISE_EXAMPLES = 8192
MIN_PRECISE_BATCHES = 20


def running_norms(model: StackedModel) -> list[nn.Module]:
    """The model's norms that keep running statistics (BN and its variants)."""
    return [n for n in model.norms if n.kind.running_statistics]


def precise_batches(batch_size: int) -> int:
    """How many training batches of ``batch_size`` a precise evaluation averages."""
    return max(MIN_PRECISE_BATCHES, math.ceil(PRECISE_EXAMPLES / batch_size))


@torch.no_grad()
def precise_statistics(model: StackedModel, split: Split, batch_size: int, batches: int) -> None:
    """Set every BN layer's running statistics to the average of the batch statistics of
    the first ``batches`` consecutive batches of ``split`` (weights fixed, no dropout;
    fewer where ``split`` holds fewer).

    Each layer sees its input as training produces it (earlier layers normalized by the
    same batch), and keeps its own variance convention (biased or Bessel-corrected).
    """
    norms = running_norms(model)
    if not norms:
        raise ValueError("the model has no batch normalization layers")
    batches = min(batches, len(split) // batch_size)
    if batches == 0:
        raise ValueError(f"batch_size {batch_size} exceeds the {len(split)} examples")
    settings = [n.settings for n in norms]
    was_training = model.training
    model.train()
    try:
        for b in range(batches):
            # momentum 1/(b+1) turns the running update into a cumulative mean
            for n, s in zip(norms, settings, strict=True):
                n.settings = dataclasses.replace(s, momentum=1.0 / (b + 1))
            model(split.x[b * batch_size : (b + 1) * batch_size])
    finally:
        for n, s in zip(norms, settings, strict=True):
            n.settings = s
        model.train(was_training)
