"""Gradient noise at the run's batch size (McCandlish et al. 2018's quantities).

At the current weights, the gradients g_1 … g_M of M consecutive training batches of
the run's batch size B (train mode, no dropout, running statistics untouched) give
unbiased estimates of the noise and the signal of one step's gradient:

- tr Σ_B = M/(M − 1) · mean ‖g_i − ḡ‖², the total variance of a batch's gradient;
- |G|² = ‖ḡ‖² − tr Σ_B / M, the squared norm of the expected gradient.

``noise`` is their ratio tr Σ_B / |G|²: how much larger the random part of one step's
gradient is than its signal (left NaN where the signal estimate is not positive). For
per-example noise, as without BN, tr Σ_B = tr Σ / B and B · ``noise`` is McCandlish's
simple noise scale B_simple; with BN a batch's gradient also carries the noise of its
statistics, which this measures too. Every member sees the same batches. ``loss`` is
their mean training loss at the same weights, the phase of training the noise belongs to.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from normlab.models.stack import StackedModel
from normlab.probes.grads import loss_and_grads, member_dot
from normlab.probes.schedule import Measurement, ProbeContext, When
from normlab.types import WHOLE

BATCHES = 8  # gradients per estimate (fewer when the training pool holds fewer batches)


def gradient_noise(
    model: StackedModel, x: torch.Tensor, y: torch.Tensor, batch: int, batches: int = BATCHES
) -> dict[str, torch.Tensor]:
    """``noise``, ``trace`` (tr Σ_B) and ``signal`` (|G|²) [K] from the first
    ``batches`` consecutive batches of ``batch`` examples of ``x``, ``y``, and ``loss``
    [K], their mean loss: how far training has got (claims 15 and 16 compare batch sizes
    and norms at equal loss, the same phase of training)."""
    m = min(batches, len(x) // batch)
    if m < 2:
        raise ValueError(f"gradient noise needs 2 batches of {batch}, the pool has {len(x)}")
    params = list(model.parameters())
    measured = [
        loss_and_grads(model, x[i * batch : (i + 1) * batch], y[i * batch : (i + 1) * batch],
                       None, params)
        for i in range(m)
    ]  # fmt: skip
    grads = [g for _, g in measured]
    mean = [torch.stack(g).mean(0) for g in zip(*grads, strict=True)]
    spread = sum(member_dot(d, d) for d in ([a - b for a, b in zip(g, mean, strict=True)]
                                             for g in grads))  # fmt: skip
    trace = spread / (m - 1)
    signal = member_dot(mean, mean) - trace / m
    noise = torch.where(signal > 0, trace / signal, torch.full_like(signal, float("nan")))
    loss = torch.stack([losses for losses, _ in measured]).mean(0)
    return {"noise": noise, "trace": trace, "signal": signal, "loss": loss}


class NoiseProbe:
    """``noise``: the gradient noise of one step at the run's batch size."""

    name = "noise"
    when = When.STEPS

    def measure(self, context: ProbeContext) -> Iterable[Measurement]:
        pool = context.train_head
        values = gradient_noise(context.model, pool.x, pool.y, context.train_batch)
        for name, v in values.items():
            yield WHOLE, name, v
