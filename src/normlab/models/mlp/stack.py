"""An MLP built as a stack of K independent members.

Dense weights are shaped [K, in, out] and each layer is one batched matmul, so K runs
that share an architecture and batch size train as one computation. Nothing couples
the members: each has its own weights, normalization statistics and random streams.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import nn

from normlab.models.blocks import hidden_block, host_keys
from normlab.models.init import init_layer
from normlab.models.mlp.spec import MLPSpec
from normlab.models.norms import make_norm
from normlab.models.registry import ACTIVATIONS
from normlab.models.stack import StackedModel
from normlab.registry import load
from normlab.seeding import derive_seed


def dense_layers(
    widths: Sequence[int], init: str, scale: float, seeds: Sequence[int], first_layer: int = 0
) -> tuple[nn.ParameterList, nn.ParameterList]:
    """Stacked weights [K, in, out] and biases [K, out] between consecutive ``widths``,
    layer j of member k drawn from its stream ``(seeds[k], first_layer + j)``."""
    weights, biases = [], []
    for j, (fan_in, fan_out) in enumerate(itertools.pairwise(widths)):
        drawn = [
            init_layer(
                init,
                (fan_in, fan_out),
                (fan_in, fan_out),
                fan_out,
                scale,
                torch.Generator().manual_seed(derive_seed(seed, "init", first_layer + j)),
            )
            for seed in seeds
        ]
        weights.append(nn.Parameter(torch.stack([w for w, _ in drawn])))
        biases.append(nn.Parameter(torch.stack([b for _, b in drawn])))
    return nn.ParameterList(weights), nn.ParameterList(biases)


class StackedMLP(StackedModel):
    """K members of one MLPSpec, member k initialised from ``seeds[k]``."""

    def __init__(self, spec: MLPSpec, seeds: Sequence[int]) -> None:
        super().__init__()
        self.spec, self.k = spec, len(seeds)
        self.weights, self.biases = dense_layers(spec.widths, spec.init, spec.init_scale, seeds)
        self.norms = nn.ModuleList(
            make_norm(spec.norm, self.k, width, spec.norm_settings) for width in spec.hidden
        )
        self.act = load(ACTIVATIONS[spec.activation].function)

    def forward(
        self,
        x: torch.Tensor,
        keys: torch.Tensor | None = None,
        *,
        shared: tuple[torch.Tensor, torch.Tensor] | None = None,
        taps: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Logits [K, B, C] for inputs [K, B, D] (one batch per member) or [B, D] (shared).

        ``keys`` ([``step_keys``, K], from ``dropout.step_keys_tensor``) applies dropout
        with their masks and a noisy norm's noise (``split_keys``); eval passes none.
        """
        if x.dim() == 2:
            # All members read the same examples: one [B, D] x [D, K*out] GEMM instead of
            # K, its output viewed as [K, B, out] without a copy.
            w_cat, b_cat = shared or self.shared_input()
            h = torch.addmm(b_cat, x, w_cat).view(x.shape[0], self.k, -1).transpose(0, 1)
        else:
            h = torch.baddbmm(self.biases[0].unsqueeze(1), x, self.weights[0])
        return dense_head(self, h, 0, keys, taps)

    def shared_input(self) -> tuple[torch.Tensor, torch.Tensor]:
        """First-layer weights [D, K*out] and bias [K*out] laid out for shared inputs."""
        w = self.weights[0]
        return w.permute(1, 0, 2).reshape(w.shape[1], -1), self.biases[0].reshape(-1)


def dense_head(
    model: StackedModel,
    h: torch.Tensor,
    first: int,
    keys: torch.Tensor | None,
    taps: list[torch.Tensor] | None,
) -> torch.Tensor:
    """The dense hidden blocks and layers of ``model`` from layer ``first`` on, for ``h``
    [K, B, width], the output of layer ``first`` before its norm. ``keys`` are the
    step's (``StackedModel.split_keys``): dropout keys are numbered from the first dense
    hidden layer, noise keys from the first norm layer."""
    dropout_keys, noise_keys = model.split_keys(keys)
    dropout_keys = host_keys(dropout_keys) if model.spec.dropout > 0 else None
    for j, norm in enumerate(model.norms[first:]):
        i = first + j
        layer_keys = None if dropout_keys is None else dropout_keys[j]
        noise = None if noise_keys is None else noise_keys[i]
        h = hidden_block(model.spec, model.act, norm, h, layer_keys, model.training, taps, noise)
        h = torch.baddbmm(model.biases[i + 1].unsqueeze(1), h, model.weights[i + 1])
    return h
