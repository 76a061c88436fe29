"""Per-layer gradient/weight norms and pre-activation statistics of a stack."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from normlab.models.stack import StackedMLP

PERCENTILES = (15.0, 50.0, 85.0)  # Ioffe & Szegedy's Figure 1
SATURATED = 0.99  # tanh |a| above this, sigmoid a outside [1 - this, this]: saturated


def layer_norms(
    model: StackedMLP, grads: Sequence[torch.Tensor] | None = None
) -> dict[str, torch.Tensor]:
    """Gradient norm, weight norm and their ratio per dense layer and member [layers, K].

    ``grads`` are the dense weights' gradients in layer order (default: their ``.grad``);
    norms are Frobenius norms of each member's [in, out] matrix.
    """
    weights = [w.detach() for w in model.weights]
    grads = [w.grad for w in model.weights] if grads is None else list(grads)
    if any(g is None for g in grads):
        raise ValueError("layer_norms needs gradients: call it after backward")
    g = torch.stack([gr.flatten(1).norm(dim=1) for gr in grads])
    w = torch.stack([wt.flatten(1).norm(dim=1) for wt in weights])
    return {"grad_norm": g, "weight_norm": w, "ratio": g / w}


def fixed_units(width: int, n: int = 3) -> list[int]:
    """``n`` unit indices spread evenly over a layer of ``width`` units, always the same."""
    return sorted({round(i * (width - 1) / max(1, n - 1)) for i in range(n)})


@torch.no_grad()
def preactivation_stats(
    model: StackedMLP, x: torch.Tensor, n_units: int = 3
) -> list[dict[str, torch.Tensor]]:
    """Statistics of each hidden layer's pre-activation (the input of its activation).

    Computed on the batch ``x`` ([B, D] shared by all members, or [K, B, D]) in the
    model's current mode (train mode: normalization by this batch's statistics), without
    dropout, leaving the running statistics untouched. Per layer, per member: ``mean``
    and ``std`` over all units and examples [K]; ``percentiles`` [K, units, 3] of the
    ``fixed_units`` over the batch; ``units`` (their indices); and ``saturated`` (tanh,
    sigmoid: fraction of values in the flat tails) or ``dead`` (relu: fraction of units
    that are not positive for any example of the batch) [K].
    """
    taps: list[torch.Tensor] = []
    with model.frozen_statistics():
        model(x, taps=taps)
    q = torch.tensor(PERCENTILES, device=x.device) / 100
    out = []
    for pre in taps:
        units = fixed_units(pre.shape[-1], n_units)
        stats = {
            "mean": pre.mean(dim=(1, 2)),
            "std": pre.std(dim=(1, 2), unbiased=False),
            "percentiles": torch.quantile(pre[:, :, units], q, dim=1).permute(1, 2, 0),
            "units": torch.tensor(units),
        }
        activation = model.spec.activation
        if activation == "relu":
            stats["dead"] = (pre <= 0).all(dim=1).float().mean(dim=1)
        elif activation == "tanh":
            stats["saturated"] = (pre.tanh().abs() > SATURATED).float().mean(dim=(1, 2))
        else:
            s = pre.sigmoid()
            tails = (s > SATURATED) | (s < 1 - SATURATED)
            stats["saturated"] = tails.float().mean(dim=(1, 2))
        out.append(stats)
    return out
