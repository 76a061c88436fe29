"""Losses and gradients of a stack on one batch, leaving its running statistics alone."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from normlab.models.blocks import member_losses
from normlab.models.stack import StackedModel


def loss_and_grads(
    model: StackedModel,
    x: torch.Tensor,
    y: torch.Tensor,
    keys: torch.Tensor | None,
    wrt: Sequence[torch.Tensor],
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Per-member losses [K] and the gradients of their sum with respect to ``wrt``.

    Members are independent, so member k's slice of each gradient is the gradient of its
    own loss. The forward uses the dropout masks of ``keys`` (None: no dropout) and, in
    train mode, this batch's statistics, without moving the running ones.
    """
    with model.frozen_statistics(), torch.enable_grad():
        losses = member_losses(model(x, keys), y)
        grads = torch.autograd.grad(losses.sum(), list(wrt))
    return losses.detach(), list(grads)


def member_norm(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """Euclidean norm [K] of each member's slice of ``tensors``, taken together."""
    return torch.stack([t.flatten(1).pow(2).sum(1) for t in tensors]).sum(0).sqrt()


def member_dot(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> torch.Tensor:
    """Inner product [K] of each member's slices of ``a`` and ``b``, taken together."""
    return torch.stack([(u * v).flatten(1).sum(1) for u, v in zip(a, b, strict=True)]).sum(0)
