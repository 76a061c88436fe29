"""The pieces every stacked family shares: the dense hidden block, dropout with
counter-based masks, and the per-member loss.

A dense hidden block is ``[dropout if "before"] -> [norm if "before"] -> activation ->
[norm if "after"] -> [dropout if "after"]`` on ``[K, B, width]``. The seed's block
(ReLU, plain BN before it or no norm) has fused CPU kernels (``models.fused``); every
other combination, and every GPU, runs the PyTorch ops.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from normlab.models import fused
from normlab.models.dropout import reference_mask
from normlab.models.norms import normalize
from normlab.models.settings import BlockSpec

Keys = np.ndarray | torch.Tensor  # one layer's dropout keys [K] (uint64 / int64)


def host_keys(keys: Keys | None) -> Keys | None:
    """Dropout keys [layers, K] as the kernels of their device take them: a uint64 array
    on a CPU (the fused kernels read it in place), the int64 tensor elsewhere."""
    if isinstance(keys, torch.Tensor) and keys.device.type == "cpu":
        return keys.numpy().view(np.uint64)
    return keys


def hidden_block(
    spec: BlockSpec,
    act,
    norm: nn.Module,
    h: torch.Tensor,
    keys: Keys | None,
    training: bool,
    taps: list[torch.Tensor] | None = None,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """One dense hidden block on ``h`` [K, B, width]; ``keys`` this layer's dropout keys
    (None: no dropout), ``noise`` its noisy norm's keys (None: none). ``taps`` receives
    the pre-activation (the activation's input)."""
    p = spec.dropout if keys is not None else 0.0
    dropout_first = spec.dropout_position == "before"
    if taps is None and h.device.type == "cpu" and spec.activation == "relu":
        inference = not training and not torch.is_grad_enabled()
        if norm.kind.name == "none":
            # Dropout's mask is >= 0, so it commutes with ReLU: either position is this.
            return h.relu_() if inference else fused.ReluDropout.apply(h, keys, p)
        # The fused kernel is plain BN's own forward (batch statistics in training).
        if norm.kind.name == "batch" and spec.norm_position == "before":
            eps = norm.settings.eps
            if inference:
                return fused.bn_relu_eval_(
                    h, norm.weight, norm.bias, norm.running_mean, norm.running_var, eps
                )
            if training and not dropout_first:
                h, mean, var = fused.BatchNormReluDropout.apply(
                    h, norm.weight, norm.bias, eps, keys, p
                )
                norm.update_running(mean, var, h.shape[1])
                return h
    if dropout_first:
        h = dropout(h, keys, p)
    pre = normalize(norm, h, noise) if spec.norm_position == "before" else h
    if taps is not None:
        taps.append(pre)
    h = act(pre) if spec.norm_position == "before" else normalize(norm, act(pre), noise)
    return h if dropout_first else dropout(h, keys, p)


def dropout(h: torch.Tensor, keys: Keys | None, p: float) -> torch.Tensor:
    """Inverted dropout of h [K, B, width] with the masks of ``keys`` (none: identity)."""
    if keys is None or p == 0.0:
        return h
    _, b, width = h.shape
    if h.device.type == "cpu":
        return h * fused.mask(keys, b, width, p)
    return h * reference_mask(keys, b, width, p, h.device)


def leaky_relu(x: torch.Tensor) -> torch.Tensor:
    """Leaky ReLU with slope 0.2 below zero, a GAN discriminator's usual activation."""
    return F.leaky_relu(x, 0.2)


def member_losses(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy per member [K] for logits [K, B, C] and labels [K, B] or [B]."""
    k, b, c = logits.shape
    y = y.expand(k, b) if y.dim() == 1 else y
    return (
        F.cross_entropy(logits.reshape(k * b, c), y.reshape(k * b), reduction="none")
        .view(k, b)
        .mean(1)
    )
