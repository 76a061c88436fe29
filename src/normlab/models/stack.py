"""What every model family's stack is: K independent members as one module.

A family's stack (``StackedMLP``, ``StackedCNN``) keeps every parameter and buffer with
the member as its first dimension, and a classifier's lays its layers out alike, so that
the loop, the optimizers, the probes and BN folding work on any family (a GAN's,
``StackedGAN``, holds two MLP stacks and redefines the objective below):

- ``weights[i]``, ``biases[i]``: layer i's parameters (dense ``[K, in, out]``,
  convolution ``[K, out, in, k, k]``), the output layer last;
- ``norms[i]``: the normalization after hidden layer i (``NoNorm`` for none), each
  answering ``kind`` (``models.registry.NormKind``);
- ``forward(x, keys, shared=, taps=)``: logits ``[K, B, classes]`` for inputs
  ``[K, B, D]`` (a batch per member) or ``[B, D]`` (shared by all members, as in
  evaluation); ``shared`` is ``shared_input()``, computed once by a caller that feeds
  many chunks of shared inputs; ``taps`` receives each hidden layer's pre-activation
  as ``[K, N, units]`` (for a convolution N counts examples × positions and a channel is
  a unit);
- ``dropout_layers``: how many layers take dropout keys.

What a training step asks of a stack is its *objective*, which every family may
redefine (a GAN does): ``step_keys`` (random keys a step draws per member),
``parameter_groups()`` (the parameters of each phase of a step, each phase with its own
optimizer state) and ``phase_loss(phase, ...)`` (the per-member loss a phase
minimises); evaluation asks ``held_out(x, y)``. A classifier's objective is one phase:
every parameter, the cross-entropy of its logits.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
from collections.abc import Iterator

import torch
from torch import nn

from normlab.models.blocks import member_losses
from normlab.models.family import EVAL_CHUNK
from normlab.models.norms import NoNorm


class StackedModel(nn.Module):
    """Base of the families' stacks: members, layer access, statistics, folding."""

    eval_chunk: int = EVAL_CHUNK  # rows per evaluation pass
    k: int
    spec: object
    weights: nn.ParameterList
    biases: nn.ParameterList
    norms: nn.ModuleList

    @property
    def dropout_layers(self) -> int:
        """Layers that take dropout keys: every family's dense hidden layers (0 when the
        spec has no dropout)."""
        return len(self.spec.hidden) if self.spec.dropout > 0 else 0

    @property
    def noise_layers(self) -> int:
        """Layers whose norm injects noise in training (``NormKind.noisy``), each taking
        a key per step: every norm layer of a noisy kind, else 0."""
        return len(self.norms) if any(norm.kind.noisy for norm in self.norms) else 0

    @property
    def step_keys(self) -> int:
        """Random keys [n, K] a training step draws (``train.step``): a classifier's are
        its dropout layers', then its noisy norm layers'."""
        return self.dropout_layers + self.noise_layers

    def split_keys(
        self, keys: torch.Tensor | None
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """A step's keys as (dropout keys [dropout layers, K], noise keys [norm layers,
        K]), each None where there are none."""
        if keys is None:
            return None, None
        d = self.dropout_layers
        return (keys[:d] if d else None), (keys[d:] if self.noise_layers else None)

    def parameter_groups(self) -> list[list[nn.Parameter]]:
        """The parameters each phase of a training step updates, in phase order."""
        return [list(self.parameters())]

    def phase_loss(
        self, phase: int, x: torch.Tensor, y: torch.Tensor, keys: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The loss [K] that ``phase`` minimises on the step's batch ``x`` [K, B, D],
        ``y`` [K, B], and how many of the batch each member got right [K] (None: the
        phase counts nothing). A classifier: cross-entropy and correct predictions."""
        return scored(self(x, keys), y)

    def held_out(
        self, x: torch.Tensor, y: torch.Tensor, shared: object | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean loss [K] and correct count [K] of every member on held-out examples
        ``x`` [B, D] (shared by all members), ``y`` [B]."""
        return scored(self(x, shared=shared), y)

    def shared_input(self) -> object | None:
        """What a forward pass on shared inputs can reuse across chunks (None: nothing)."""
        return None

    def layer_parameters(self, i: int) -> list[torch.Tensor]:
        """Layer i's weights and bias and, for a hidden layer, its norm's parameters."""
        params = [self.weights[i], self.biases[i]]
        if i < len(self.norms):
            params += list(self.norms[i].parameters())
        return params

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

    def can_fold(self) -> bool:
        """Whether every norm folds into the layer right before it (a foldable kind,
        placed before the activation)."""
        return (
            self.spec.norm_position == "before"
            and len(self.norms) > 0
            and all(norm.kind.foldable for norm in self.norms)
        )

    @torch.no_grad()
    def fold(self) -> StackedModel:
        """A copy with each norm folded into the layer before it, for inference.

        In eval mode such a norm is an affine map per unit, y = γ (x − μ) / √(σ² + ε) + β
        with the running μ and σ². After a layer x = h W + b (or a convolution) the two
        compose into one layer with W' = W · s and b' = (b − μ) · s + β, where
        s = γ / √(σ² + ε) scales each output unit (column, or output channel). The copy
        has no norms (its spec says ``norm="none"``) and gives the same eval-mode outputs
        up to float rounding.
        """
        if not self.can_fold():
            raise ValueError(
                f"only a foldable norm placed before the activation folds into the layer "
                f"before it; this model has norm={self.spec.norm!r} at "
                f"{self.spec.norm_position!r}"
            )
        folded = copy.deepcopy(self)
        for i, norm in enumerate(self.norms):
            scale = norm.weight * torch.rsqrt(norm.running_var + norm.settings.eps)  # [K, U]
            w = folded.weights[i]
            w.mul_(scale.unsqueeze(1) if w.dim() == 3 else scale.view(*scale.shape, 1, 1, 1))
            folded.biases[i].copy_((self.biases[i] - norm.running_mean) * scale + norm.bias)
            folded.norms[i] = NoNorm()
        folded.spec = dataclasses.replace(self.spec, norm="none")
        return folded.eval()

    @torch.no_grad()
    def member(self, m: int) -> StackedModel:
        """A stack of one: a copy of member ``m`` alone (e.g. to time one model)."""
        one = copy.deepcopy(self)
        for module in one.modules():
            for store in (module._parameters, module._buffers):
                for name, t in store.items():
                    if t is not None and t.dim() > 0:
                        one_of = t[m : m + 1].clone()
                        param = isinstance(t, nn.Parameter)
                        store[name] = nn.Parameter(one_of) if param else one_of
        for module in one.modules():
            if isinstance(module, StackedModel):
                module.k = 1
        return one


def scored(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy [K] and correct predictions [K] of logits [K, B, C] for labels ``y``."""
    return member_losses(logits, y), (logits.argmax(-1) == y).sum(1)
