"""Per-layer gradient/weight norms and pre-activation statistics of a stack."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

from normlab.models.registry import ACTIVATIONS
from normlab.models.stack import StackedModel
from normlab.probes.schedule import Measurement, ProbeContext, When

PERCENTILES = (15.0, 50.0, 85.0)  # Ioffe & Szegedy's Figure 1
QUANTILES = tuple(p / 100 for p in PERCENTILES)  # as recorded (a probe row's quantile)
SATURATED = 0.01  # a saturating activation's output this close to a bound is saturated


def layer_norms(model: StackedModel, grads: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Gradient norm, weight norm and their ratio per layer and member [layers, K].

    ``grads`` are the layers' weight gradients in layer order; norms are Frobenius norms
    of each member's weight (dense [in, out] or convolution [out, in, k, k])."""
    g = torch.stack([gr.flatten(1).norm(dim=1) for gr in grads])
    w = torch.stack([wt.detach().flatten(1).norm(dim=1) for wt in model.weights])
    return {"grad_norm": g, "weight_norm": w, "ratio": g / w}


def fixed_units(width: int, n: int = 3) -> list[int]:
    """``n`` unit indices spread evenly over a layer of ``width`` units, always the same."""
    return sorted({round(i * (width - 1) / max(1, n - 1)) for i in range(n)})


@torch.no_grad()
def preactivation_stats(
    model: StackedModel, x: torch.Tensor, n_units: int = 3
) -> list[dict[str, torch.Tensor]]:
    """Statistics of each hidden layer's pre-activation (the input of its activation).

    Computed on the batch ``x`` ([B, D] shared by all members, or [K, B, D]) in the
    model's current mode (train mode: normalization by this batch's statistics), without
    dropout, leaving the running statistics untouched. A tap is [K, N, units] (for a
    convolution N counts examples and positions, and a unit is a channel). Per layer,
    per member: ``mean`` and ``std`` over all units and values [K]; ``percentiles``
    [K, units, 3] of the ``fixed_units`` over N; ``units`` (their indices); and
    ``saturated`` (saturating activations: fraction of outputs within 0.01 of a bound)
    or ``dead`` (ReLU: fraction of units not positive anywhere in the batch) [K].
    """
    taps: list[torch.Tensor] = []
    with model.frozen_statistics():
        model(x, taps=taps)
    q = torch.tensor(PERCENTILES, device=x.device) / 100
    bounds = ACTIVATIONS[model.spec.activation].bounds
    act = model.act
    out = []
    for pre in taps:
        units = fixed_units(pre.shape[-1], n_units)
        stats = {
            "mean": pre.mean(dim=(1, 2)),
            "std": pre.std(dim=(1, 2), unbiased=False),
            "percentiles": torch.quantile(pre[:, :, units], q, dim=1).permute(1, 2, 0),
            "units": torch.tensor(units),
        }
        if bounds is None:
            stats["dead"] = (pre <= 0).all(dim=1).float().mean(dim=1)
        else:
            a, (low, high) = act(pre), bounds
            tails = (a > high - SATURATED) | (a < low + SATURATED)
            stats["saturated"] = tails.float().mean(dim=(1, 2))
        out.append(stats)
    return out


class LayersProbe:
    """``layers``: gradient norm, weight norm and their ratio of every layer."""

    name = "layers"
    when = When.STEPS

    def measure(self, context: ProbeContext) -> Iterable[Measurement]:
        for name, per_layer in layer_norms(context.model, context.weight_grads()).items():
            for layer, values in enumerate(per_layer):
                yield layer, name, values


class ActivationsProbe:
    """``activations``: pre-activation statistics of every hidden layer on held-out data."""

    name = "activations"
    when = When.STEPS

    def measure(self, context: ProbeContext) -> Iterable[Measurement]:
        for layer, stats in enumerate(preactivation_stats(context.model, context.held_out.x)):
            for name in ("mean", "std", "dead", "saturated"):
                if name in stats:
                    yield layer, name, stats[name]
            for u, unit in enumerate(stats["units"].tolist()):
                for q, pct in zip(QUANTILES, stats["percentiles"][:, u].T, strict=True):
                    yield Measurement(layer, "quantile", pct, unit, q)
