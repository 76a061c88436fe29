"""Loss-landscape smoothness along the gradient, as Santurkar et al. (2018, section 3.1)
measure it.

From the parameters θ with gradient g, take steps θ − η·g for a range of η and record,
per member: the *loss variation* (the range of L over the steps, θ included), the
*gradient predictiveness* (the largest ‖∇L(θ) − ∇L(θ − η g)‖₂) and the *effective
β-smoothness* (the largest ‖∇L(θ) − ∇L(θ − η g)‖ / ‖η g‖). Smaller is smoother.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

from normlab.models.stack import StackedModel
from normlab.probes.grads import loss_and_grads, member_norm
from normlab.probes.schedule import Measurement, ProbeContext, When
from normlab.types import WHOLE

STEP_MULTIPLES = (0.5, 1.0, 2.0, 4.0)  # η as multiples of each member's learning rate


def smoothness(
    model: StackedModel,
    x: torch.Tensor,
    y: torch.Tensor,
    keys: torch.Tensor | None,
    lrs: Sequence[float],
    multiples: Sequence[float] = STEP_MULTIPLES,
) -> dict[str, torch.Tensor]:
    """``loss_variation``, ``grad_predictiveness`` and ``beta_smoothness`` [K] at the
    model's current parameters, with η = multiple × the member's learning rate. The
    model is left as it was."""
    params = list(model.parameters())
    loss0, g0 = loss_and_grads(model, x, y, keys, params)
    original = [p.detach().clone() for p in params]
    lr = torch.tensor(list(lrs), dtype=torch.float32, device=loss0.device)
    g_norm = member_norm(g0)
    losses, pred, beta = [loss0], [], []
    for m in multiples:
        eta = lr * m
        try:
            with torch.no_grad():
                for p, g in zip(params, g0, strict=True):
                    p.sub_(eta.view(-1, *[1] * (p.dim() - 1)) * g)
            loss, g_eta = loss_and_grads(model, x, y, keys, params)
        finally:
            with torch.no_grad():
                for p, saved in zip(params, original, strict=True):
                    p.copy_(saved)
        change = member_norm([a - b for a, b in zip(g0, g_eta, strict=True)])
        losses.append(loss)
        pred.append(change)
        beta.append(change / (eta * g_norm))
    stacked = torch.stack(losses)
    return {
        "loss_variation": stacked.max(0).values - stacked.min(0).values,
        "grad_predictiveness": torch.stack(pred).max(0).values,
        "beta_smoothness": torch.stack(beta).max(0).values,
    }


class SmoothnessProbe:
    """``smoothness``: the loss landscape along the gradient of the step's own batch."""

    name = "smoothness"
    when = When.STEPS

    def measure(self, context: ProbeContext) -> Iterable[Measurement]:
        b = context.batch
        for name, values in smoothness(context.model, b.x, b.y, b.keys, context.rates.host).items():
            yield WHOLE, name, values
