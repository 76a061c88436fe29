"""A small CNN built as a stack of K independent members.

The members' feature maps lie side by side as channels, ``[B, K·C, H, W]`` (example b
of member k is member k's own b-th example), so each convolution of the stack is one
grouped convolution with ``groups=K``: group k sees only member k's channels and has
member k's weights (HFTA's layout; ``torch.func.vmap`` of a convolution does the same).
Norms take that layout (``models.norms``: a channel is a unit, BatchNorm2d's statistics
per member and channel), activations and 2×2 max-pooling are per channel. The pooled
maps are then flattened per member into ``[K, B, features]`` and the dense part is the
MLP's, dropout and fused kernels included.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from normlab.models.cnn import EVAL_ROWS
from normlab.models.cnn.fused import BatchNormPoolRelu, bn_pool_relu_eval
from normlab.models.cnn.spec import CNNSpec
from normlab.models.init import init_layer
from normlab.models.mlp.stack import dense_head, dense_layers
from normlab.models.norms import make_norm, normalize
from normlab.models.registry import ACTIVATIONS
from normlab.models.stack import StackedModel
from normlab.registry import load
from normlab.seeding import derive_seed


def conv_layers(
    spec: CNNSpec, seeds: Sequence[int]
) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """Stacked kernels [K, C_out, C_in, k, k] and biases [K, C_out] of the conv blocks,
    block i of member k drawn from its stream ``(seeds[k], i)`` with Keras's fans."""
    kk, weights, biases = spec.kernel, [], []
    ins = [spec.image[0], *spec.channels]
    for i, (c_in, c_out) in enumerate(zip(ins, spec.channels, strict=False)):
        drawn = [
            init_layer(
                spec.init,
                (c_out, c_in, kk, kk),
                (c_in * kk * kk, c_out * kk * kk),
                c_out,
                spec.init_scale,
                torch.Generator().manual_seed(derive_seed(seed, "init", i)),
            )
            for seed in seeds
        ]
        weights.append(nn.Parameter(torch.stack([w for w, _ in drawn])))
        biases.append(nn.Parameter(torch.stack([b for _, b in drawn])))
    return weights, biases


class StackedCNN(StackedModel):
    """K members of one CNNSpec, member k initialised from ``seeds[k]``."""

    eval_chunk = EVAL_ROWS

    def __init__(self, spec: CNNSpec, seeds: Sequence[int]) -> None:
        super().__init__()
        self.spec, self.k = spec, len(seeds)
        conv_w, conv_b = conv_layers(spec, seeds)
        dense_w, dense_b = dense_layers(
            spec.dense_widths, spec.init, spec.init_scale, seeds, first_layer=len(spec.channels)
        )
        self.weights = nn.ParameterList([*conv_w, *dense_w])
        self.biases = nn.ParameterList([*conv_b, *dense_b])
        units = (*spec.channels, *spec.hidden)
        self.norms = nn.ModuleList(
            make_norm(spec.norm, self.k, u, spec.norm_settings) for u in units
        )
        self.act = load(ACTIVATIONS[spec.activation].function)

    def forward(
        self,
        x: torch.Tensor,
        keys: torch.Tensor | None = None,
        *,
        shared: object | None = None,
        taps: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Logits [K, B, C] for flattened images [K, B, D] (one batch per member) or
        [B, D] (shared: the first convolution is then one plain convolution with all
        members' kernels). ``keys`` ([``step_keys``, K]) as for the MLP."""
        k, (c, h, w) = self.k, self.spec.image
        if x.dim() == 2:
            b, groups = x.shape[0], 1
            z = x.view(b, c, h, w)
        else:
            b, groups = x.shape[1], k
            z = x.view(k, b, c, h, w).transpose(0, 1).reshape(b, k * c, h, w)
        # Channels last (NHWC): PyTorch's CPU kernels for convolution, BN and pooling
        # vectorize over the channels, 1.3-3× faster here than on NCHW.
        z = z.contiguous(memory_format=torch.channels_last)
        blocks = len(self.spec.channels)
        noise_keys = self.split_keys(keys)[1]
        for i in range(blocks):
            weight = self.weights[i]
            z = F.conv2d(z, weight.reshape(-1, *weight.shape[2:]), self.biases[i].reshape(-1),
                         padding="same", groups=groups)  # fmt: skip
            noise = None if noise_keys is None else noise_keys[i]
            z = self._conv_block(self.norms[i], z, taps, noise)
            groups = k
        flat = z.reshape(b, k, -1).transpose(0, 1)  # [K, B, features]
        h = torch.baddbmm(self.biases[blocks].unsqueeze(1), flat, self.weights[blocks])
        return dense_head(self, h, blocks, keys, taps)

    def _conv_block(
        self,
        norm: nn.Module,
        z: torch.Tensor,
        taps: list[torch.Tensor] | None,
        noise: torch.Tensor | None,
    ) -> torch.Tensor:
        """Norm, activation and 2×2 max-pooling of a convolution's output ``z``
        (``noise``: a noisy norm's keys for this layer)."""
        if taps is None and z.device.type == "cpu" and self.spec.activation == "relu":
            fused = self._fused_block(norm, z)
            if fused is not None:
                return fused
        if self.spec.norm_position == "after":
            pre = z
            z = F.max_pool2d(normalize(norm, self.act(pre), noise), 2)
        else:
            # The activation is non-decreasing, so it commutes with taking a maximum:
            # pooling first applies it to a quarter of the values.
            pre = normalize(norm, z, noise)
            z = self.act(F.max_pool2d(pre, 2))
        if taps is not None:  # as [K, examples × positions, channels]
            b, kc, h, w = pre.shape
            by_member = pre.reshape(b, self.k, kc // self.k, h * w).permute(1, 0, 3, 2)
            taps.append(by_member.reshape(self.k, -1, kc // self.k))
        return z

    def _fused_block(self, norm: nn.Module, z: torch.Tensor) -> torch.Tensor | None:
        """The block's fused CPU kernel, where one implements it (plain BN before ReLU);
        else None."""
        if norm.kind.name != "batch" or self.spec.norm_position != "before":
            return None
        eps, w, b = norm.settings.eps, norm.weight.reshape(-1), norm.bias.reshape(-1)
        if not self.training and not torch.is_grad_enabled():
            rm, rv = norm.running_mean.reshape(-1), norm.running_var.reshape(-1)
            return bn_pool_relu_eval(z, w, b, rm, rv, eps)
        if not self.training:
            return None
        out, mean, var = BatchNormPoolRelu.apply(z, w, b, eps)
        norm.update_running(mean, var, z.numel() // z.shape[1])
        return out
