"""An MLP described by data and built as a stack of K independent members.

Dense weights are shaped [K, in, out] and each layer is one batched matmul, so K runs
that share an architecture and batch size train as one computation. Nothing couples
the members: each has its own weights, normalization statistics and random streams.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from normlab.models import fused
from normlab.models.dropout import reference_mask
from normlab.models.init import init_linear
from normlab.models.norms import BatchNorm, NormSettings, make_norm
from normlab.seeding import derive_seed

ACTIVATIONS = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid}


@dataclass(frozen=True)
class MLPSpec:
    """Architecture of every member of a stack.

    A hidden block is Dense -> [norm if "before"] -> activation -> [norm if "after"]
    -> dropout; the output layer is Dense to ``n_classes`` logits (the softmax lives in
    the loss). ``dropout_position="before"`` moves the dropout to right after the
    Dense, so that it feeds the norm directly (Li et al. 2019's "dropout before BN").
    """

    n_inputs: int
    hidden: tuple[int, ...]
    n_classes: int
    activation: str = "relu"
    norm: str = "none"
    norm_position: str = "before"
    dropout: float = 0.0
    dropout_position: str = "after"
    init: str = "glorot_uniform"
    init_scale: float = 1.0
    norm_settings: NormSettings = field(default_factory=NormSettings)

    def __post_init__(self) -> None:
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"unknown activation {self.activation!r}: choose one of {', '.join(ACTIVATIONS)}"
            )
        if self.norm_position not in ("before", "after"):
            raise ValueError(f"norm_position must be before or after, got {self.norm_position!r}")
        if self.dropout_position not in ("before", "after"):
            raise ValueError(
                f"dropout_position must be before or after, got {self.dropout_position!r}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    @property
    def widths(self) -> tuple[int, ...]:
        return (self.n_inputs, *self.hidden, self.n_classes)


class StackedMLP(nn.Module):
    """K members of one MLPSpec, member k initialised from ``seeds[k]``."""

    def __init__(self, spec: MLPSpec, seeds: Sequence[int]) -> None:
        super().__init__()
        self.spec, self.k = spec, len(seeds)
        weights, biases = [], []
        for layer, (fan_in, fan_out) in enumerate(zip(spec.widths, spec.widths[1:], strict=False)):
            drawn = [
                init_linear(
                    spec.init,
                    fan_in,
                    fan_out,
                    spec.init_scale,
                    torch.Generator().manual_seed(derive_seed(seed, "init", layer)),
                )
                for seed in seeds
            ]
            weights.append(nn.Parameter(torch.stack([w for w, _ in drawn])))
            biases.append(nn.Parameter(torch.stack([b for _, b in drawn])))
        self.weights, self.biases = nn.ParameterList(weights), nn.ParameterList(biases)
        self.norms = nn.ModuleList(
            make_norm(spec.norm, self.k, width, spec.norm_settings) for width in spec.hidden
        )
        self.act = ACTIVATIONS[spec.activation]

    def forward(
        self,
        x: torch.Tensor,
        dropout_keys: np.ndarray | None = None,
        first_layer: tuple[torch.Tensor, torch.Tensor] | None = None,
        taps: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Logits [K, B, C] for inputs [K, B, D] (one batch per member) or [B, D] (shared).

        ``dropout_keys`` ([hidden layers, K], from ``dropout.step_keys``) applies dropout
        with those masks; eval passes none. ``first_layer`` is ``shared_first_layer()``,
        computed once by a caller that feeds many chunks of shared inputs. ``taps``, a
        list, receives each hidden layer's pre-activation [K, B, width] (the input of its
        activation function), for the probes.
        """
        if x.dim() == 2:
            # All members read the same examples: one [B, D] x [D, K*out] GEMM instead of
            # K, its output viewed as [K, B, out] without a copy.
            w_cat, b_cat = first_layer or self.shared_first_layer()
            h = torch.addmm(b_cat, x, w_cat).view(x.shape[0], self.k, -1).transpose(0, 1)
        else:
            h = torch.baddbmm(self.biases[0].unsqueeze(1), x, self.weights[0])
        for i, norm in enumerate(self.norms):
            keys = None if dropout_keys is None or self.spec.dropout == 0 else dropout_keys[i]
            h = self._hidden_block(norm, h, keys, taps)
            h = torch.baddbmm(self.biases[i + 1].unsqueeze(1), h, self.weights[i + 1])
        return h

    def shared_first_layer(self) -> tuple[torch.Tensor, torch.Tensor]:
        """First-layer weights [D, K*out] and bias [K*out] laid out for shared inputs."""
        w = self.weights[0]
        return w.permute(1, 0, 2).reshape(w.shape[1], -1), self.biases[0].reshape(-1)

    @contextlib.contextmanager
    def frozen_statistics(self) -> Iterator[None]:
        """Run forward passes (e.g. a probe's, in train mode) that leave the running
        statistics of the normalization layers as they were."""
        saved = [b.clone() for b in self.buffers()]
        try:
            yield
        finally:
            with torch.no_grad():
                for b, s in zip(self.buffers(), saved, strict=True):
                    b.copy_(s)

    def _hidden_block(
        self,
        norm: nn.Module,
        h: torch.Tensor,
        keys: np.ndarray | None,
        taps: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        p = self.spec.dropout if keys is not None else 0.0
        h = h.float()  # normalization and its statistics stay fp32 under bf16 autocast
        dropout_first = self.spec.dropout_position == "before"
        if taps is None and h.device.type == "cpu" and self.spec.activation == "relu":
            # The seed's block ([batch norm ->] ReLU -> dropout) has fused CPU kernels.
            inference = not self.training and not torch.is_grad_enabled()
            if type(norm) is nn.Identity:
                # Dropout's mask is >= 0, so it commutes with ReLU: either position is this.
                return h.relu_() if inference else fused.ReluDropout.apply(h, keys, p)
            if type(norm) is BatchNorm and self.spec.norm_position == "before":
                eps = norm.settings.eps
                if inference:
                    return fused.bn_relu_eval_(
                        h, norm.weight, norm.bias, norm.running_mean, norm.running_var, eps
                    )
                if self.training and not dropout_first:
                    h, mean, var = fused.BatchNormReluDropout.apply(
                        h, norm.weight, norm.bias, eps, keys, p
                    )
                    norm.update_running(mean, var, h.shape[1])
                    return h
        if dropout_first:
            h = _dropout(h, keys, p)
        pre = norm(h) if self.spec.norm_position == "before" else h
        if taps is not None:
            taps.append(pre)
        h = self.act(pre) if self.spec.norm_position == "before" else norm(self.act(pre))
        return h if dropout_first else _dropout(h, keys, p)


def _dropout(h: torch.Tensor, keys: np.ndarray | None, p: float) -> torch.Tensor:
    """Inverted dropout of h [K, B, width] with the masks of ``keys`` (none: identity)."""
    if keys is None or p == 0.0:
        return h
    _, b, width = h.shape
    if h.device.type == "cpu":
        return h * fused.mask(keys, b, width, p)
    return h * reference_mask(keys, b, width, p, h.device)


def member_losses(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy per member [K] for logits [K, B, C] and labels [K, B] or [B]."""
    k, b, c = logits.shape
    y = y.expand(k, b) if y.dim() == 1 else y
    return (
        F.cross_entropy(logits.reshape(k * b, c), y.reshape(k * b), reduction="none")
        .view(k, b)
        .mean(1)
    )
