"""Batch normalization's train/eval discrepancy, variance shift, and "precise BN".

In training BN normalizes by the batch's statistics; at inference by running averages
of them. ``discrepancy`` evaluates the same data both ways. ``variance_shift`` compares
each BN layer's running variance with the variance its input really has at inference
(Li et al. 2019: dropout before BN makes them differ). The probe also measures accuracy
after precise BN (``models.statistics``) recomputes the running averages.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import torch

from normlab.data.prepare import Split
from normlab.models.blocks import member_losses
from normlab.models.stack import StackedModel
from normlab.models.statistics import precise_statistics, running_norms
from normlab.probes.schedule import PRECISE_BATCHES, Measurement, ProbeContext, When
from normlab.types import WHOLE


@torch.no_grad()
def discrepancy(model: StackedModel, split: Split, batch_size: int) -> dict[str, torch.Tensor]:
    """Loss and accuracy [K] of every member on ``split``, with batch statistics
    (train-mode normalization over consecutive batches of ``batch_size``, no dropout;
    the running statistics stay as they are) and with running statistics (eval mode).
    A last partial batch is left out of both."""
    n = len(split) // batch_size * batch_size
    if n == 0:
        raise ValueError(f"batch_size {batch_size} exceeds the {len(split)} examples")
    was_training = model.training
    out: dict[str, torch.Tensor] = {}
    for mode, training in (("batch", True), ("running", False)):
        model.train(training)
        loss = torch.zeros(model.k, dtype=torch.float64, device=split.x.device)
        correct = torch.zeros(model.k, dtype=torch.long, device=split.x.device)
        with model.frozen_statistics():
            for start in range(0, n, batch_size):
                x, y = split.x[start : start + batch_size], split.y[start : start + batch_size]
                logits = model(x)
                loss += member_losses(logits, y).double() * len(y)
                correct += (logits.argmax(-1) == y).sum(1)
        out[f"{mode}_loss"] = (loss / n).float()
        out[f"{mode}_acc"] = correct.double() / n
    model.train(was_training)
    return out


@torch.no_grad()
def variance_shift(model: StackedModel, x: torch.Tensor) -> list[torch.Tensor]:
    """Li et al. (2019)'s variance shift of every BN layer [K], on the inputs ``x``.

    The model runs in eval mode (running statistics, no dropout), as at inference. For
    each unit, ``r`` is the BN layer's running variance over the variance its input has
    over ``x``; the shift is the mean over units of max(r, 1/r): 1 when the running
    statistics match inference, larger the more they are off in either direction. Both
    variances get BN's epsilon, as in the normalization itself, so a constant unit
    does not divide by zero.
    """
    norms = running_norms(model)
    if not norms:
        raise ValueError("the model has no batch normalization layers")
    inputs: list[torch.Tensor] = []
    hooks = [n.register_forward_pre_hook(lambda _, args: inputs.append(args[0])) for n in norms]
    was_training = model.training
    model.eval()
    try:
        # taps keep the forward on the module path (the fused kernels bypass the hooks)
        model(x, taps=[])
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    shifts = []
    for norm, h in zip(norms, inputs, strict=True):
        real = norm.input_variance(h)  # [K, units]
        eps = norm.settings.eps
        r = (norm.running_var + eps) / (real + eps)
        shifts.append(torch.maximum(r, 1 / r).mean(dim=1))
    return shifts


class BatchNormProbe:
    """``bn``: accuracy and loss with batch vs running statistics on held-out data; for
    networks with running statistics also each such layer's variance shift and the
    accuracy after precise BN recomputes the running statistics."""

    name = "bn"
    when = When.STEPS

    def measure(self, context: ProbeContext) -> Iterable[Measurement]:
        model, held_out = context.model, context.held_out
        for name, values in discrepancy(model, held_out, context.batch_size).items():
            yield WHOLE, name, values
        if not running_norms(model):
            return
        for layer, values in enumerate(variance_shift(model, held_out.x)):
            yield layer, "variance_shift", values
        recalibrated = copy.deepcopy(model)
        precise_statistics(recalibrated, context.train_head, context.train_batch, PRECISE_BATCHES)
        precise = discrepancy(recalibrated, held_out, context.batch_size)
        yield WHOLE, "precise_loss", precise["running_loss"]
        yield WHOLE, "precise_acc", precise["running_acc"]
