"""Folding batch normalization into the dense layer before it, for inference.

In eval mode BN is an affine map per feature, y = γ (x − μ) / √(σ² + ε) + β with the
running μ and σ². When it directly follows a dense layer x = h W + b, the two compose
into one dense layer with W' = W · s and b' = (b − μ) · s + β, where s = γ / √(σ² + ε)
scales each output column. The folded network computes the same function with one
elementwise pass fewer per hidden layer.
"""

from __future__ import annotations

import copy
import dataclasses

import torch
from torch import nn

from normlab.models.norms import BatchNorm
from normlab.models.stack import StackedMLP


def can_fold(model: StackedMLP) -> bool:
    """Whether every norm of ``model`` is plain BN placed right after its dense layer."""
    return model.spec.norm_position == "before" and all(
        type(norm) is BatchNorm for norm in model.norms
    )


@torch.no_grad()
def fold_batchnorm(model: StackedMLP) -> StackedMLP:
    """A copy of ``model`` with each BN folded into the dense layer before it.

    The copy has no normalization layers (its spec says ``norm="none"``) and gives the
    same eval-mode outputs as ``model`` up to float rounding.
    """
    if not can_fold(model):
        raise ValueError(
            f"only BN placed before the activation folds into a dense layer; this model has "
            f"norm={model.spec.norm!r} at {model.spec.norm_position!r}"
        )
    folded = copy.deepcopy(model)
    for i, norm in enumerate(model.norms):
        scale = norm.weight * torch.rsqrt(norm.running_var + norm.settings.eps)  # [K, F]
        folded.weights[i].mul_(scale.unsqueeze(1))
        folded.biases[i].copy_((model.biases[i] - norm.running_mean) * scale + norm.bias)
        folded.norms[i] = nn.Identity()
    folded.spec = dataclasses.replace(model.spec, norm="none")
    return folded.eval()
