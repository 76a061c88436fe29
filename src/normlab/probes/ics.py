"""Internal covariate shift as Santurkar et al. (2018, "How does batch normalization
help optimization?", section 2.2) define it.

For layer i, G is the gradient of the loss with respect to its weights, and G' the same
gradient on the same batch after every layer before i has taken its update for this
step (the optimizer's real update). The shift is ‖G − G'‖₂, with cos(G, G') beside it:
how much the ground moved under layer i because its inputs' producers changed.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import torch

from normlab.models.stack import StackedModel
from normlab.probes.grads import loss_and_grads, member_dot, member_norm
from normlab.probes.schedule import Measurement, ProbeContext, When
from normlab.train.optim import Optimizer, OptimizerState, Rates


def internal_covariate_shift(
    model: StackedModel,
    optimizer: Optimizer,
    opt_state: OptimizerState,
    x: torch.Tensor,
    y: torch.Tensor,
    keys: torch.Tensor | None,
    rates: Rates,
) -> dict[str, torch.Tensor]:
    """``distance`` ‖G − G'‖ and ``cosine`` cos(G, G') per layer and member [layers, K];
    layer 0 has nothing before it (distance 0, cosine 1).

    ``opt_state`` is the optimizer's state before this step; neither it nor the model
    is changed.
    """
    params = list(model.parameters())
    _, grads = loss_and_grads(model, x, y, keys, params)
    stepped = [p.detach().clone() for p in params]
    everyone = torch.ones(model.k, dtype=torch.bool, device=x.device)
    optimizer.update(copy.deepcopy(opt_state), stepped, grads, rates, everyone)
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
                    for p in model.layer_parameters(layer):
                        p.copy_(updated[id(p)])
            _, (g_after,) = loss_and_grads(model, x, y, keys, [w])
        finally:
            with torch.no_grad():
                for p, saved in zip(params, original, strict=True):
                    p.copy_(saved)
        distance.append(member_norm([g - g_after]))
        cosine.append(member_dot([g], [g_after]) / (member_norm([g]) * member_norm([g_after])))
    return {"distance": torch.stack(distance), "cosine": torch.stack(cosine)}


class CovariateShiftProbe:
    """``ics``: internal covariate shift of every layer on the step's own batch."""

    name = "ics"
    when = When.STEPS

    def measure(self, context: ProbeContext) -> Iterable[Measurement]:
        b = context.batch
        ics = internal_covariate_shift(
            context.model, context.optimizer, context.opt_state, b.x, b.y, b.keys, context.rates
        )
        for name, per_layer in ics.items():
            for layer, values in enumerate(per_layer):
                yield layer, name, values
