"""Internal covariate shift as Santurkar et al. (2018, "How does batch normalization
help optimization?", section 2.2) define it.

For layer i, G is the gradient of the loss with respect to its weights, and G' the same
gradient on the same batch after every layer before i has taken its update for this
step (the optimizer's real update). The shift is ‖G − G'‖₂, with cos(G, G') beside it:
how much the ground moved under layer i because its inputs' producers changed.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from normlab.models.stack import StackedMLP
from normlab.probes.grads import loss_and_grads, member_dot, member_norm

if TYPE_CHECKING:  # the optimizer comes from the caller; probes sit below train
    from normlab.train.optim import AdamState, Optimizer, SGDState


def _layer_params(model: StackedMLP, i: int) -> list[torch.Tensor]:
    # Dense layer i and, for a hidden layer, the normalization that follows it.
    params = [model.weights[i], model.biases[i]]
    if i < len(model.norms):
        params += list(model.norms[i].parameters())
    return params


def internal_covariate_shift(
    model: StackedMLP,
    optimizer: Optimizer,
    opt_state: AdamState | SGDState,
    x: torch.Tensor,
    y: torch.Tensor,
    keys: np.ndarray | None,
    lrs: Sequence[float],
) -> dict[str, torch.Tensor]:
    """``distance`` ‖G − G'‖ and ``cosine`` cos(G, G') per dense layer and member
    [layers, K]; layer 0 has nothing before it (distance 0, cosine 1).

    ``opt_state`` is the optimizer's state before this step; neither it nor the model
    is changed.
    """
    params = list(model.parameters())
    _, grads = loss_and_grads(model, x, y, keys, params)
    stepped = [p.detach().clone() for p in params]
    optimizer.step(copy.deepcopy(opt_state), stepped, grads, lrs, [True] * model.k)
    updated = dict(zip(map(id, params), stepped, strict=True))
    original = [p.detach().clone() for p in params]
    distance, cosine = [], []
    for i, w in enumerate(model.weights):
        g = grads[next(j for j, p in enumerate(params) if p is w)]
        if i == 0:
            distance.append(torch.zeros(model.k, device=g.device))
            cosine.append(torch.ones(model.k, device=g.device))
            continue
        try:
            with torch.no_grad():
                for layer in range(i):
                    for p in _layer_params(model, layer):
                        p.copy_(updated[id(p)])
            _, (g_after,) = loss_and_grads(model, x, y, keys, [w])
        finally:
            with torch.no_grad():
                for p, saved in zip(params, original, strict=True):
                    p.copy_(saved)
        distance.append(member_norm([g - g_after]))
        cosine.append(member_dot([g], [g_after]) / (member_norm([g]) * member_norm([g_after])))
    return {"distance": torch.stack(distance), "cosine": torch.stack(cosine)}
