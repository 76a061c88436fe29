"""The MLP's training step on a CPU without autograd: a known backward and a fused update.

The seed's MLP is a chain whose backward is known in closed form: dense layers, the
hidden block (plain BN before ReLU, or no norm; dropout after), softmax cross-entropy.
Autograd and a separate optimizer pass cost this network ~0.8 ms of Python and graph
bookkeeping per step and a round trip of every weight gradient through memory (issue
13's profile). ``DirectStep`` writes the backward out, updates the small parameters with
the optimizer's own fused kernel, and hands the input layer, which holds most of the
weights, to ``train.input_layer``: its gradient, Adam's update and the next step's
forward in one sweep over the weights.

It is the same step as ``train.step``'s autograd path (the forward, the loss, the
divergence flags, the update), in another order of summation: members' trajectories
agree to float rounding, which ``tests/test_direct_step.py`` measures on real MNIST for
both norms. ``applies`` says when it applies (an MLP of that shape, Adam, a CPU,
inputs mostly zeros, no instrument looking inside the step); otherwise the autograd
path runs, which every other model, norm, optimizer and device takes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from normlab.models import fused
from normlab.models.blocks import host_keys
from normlab.models.mlp.stack import StackedMLP
from normlab.train import input_layer
from normlab.train.optim import Adam, AdamState, Rates

# The share of zero inputs from which the direct step pays. Measured at K=16 (issue 24,
# BENCHMARKS.md): MNIST's pixels (81 % zeros) step 1.3-1.6x faster than with autograd;
# Fashion-MNIST's (51 %) no faster at B=32 and 1.3x slower at B=256.
SPARSE = 0.7


def _sparse(x: torch.Tensor) -> bool:
    """Whether inputs ``x`` [N, D] are mostly zeros (judged on up to 1,000 of them)."""
    sample = x[:1000]
    return bool((sample == 0).float().mean() >= SPARSE)


def applies(model: object, optimizer: object, x: torch.Tensor) -> bool:
    """Whether ``DirectStep`` can take ``model``'s steps under ``optimizer`` on ``x``."""
    if not (isinstance(model, StackedMLP) and isinstance(optimizer, Adam)):
        return False
    spec = model.spec
    blocks_known = spec.activation == "relu" and all(
        norm.kind.name == "none"
        or (
            norm.kind.name == "batch"
            and spec.norm_position == "before"
            and spec.dropout_position != "before"
        )
        for norm in model.norms
    )
    return blocks_known and x.device.type == "cpu" and model.training and _sparse(x)


@dataclass
class _Saved:
    """What the backward needs of one hidden block: its input and output (and for BN
    the batch statistics)."""

    pre: torch.Tensor
    out: torch.Tensor
    mean: torch.Tensor | None = None
    var: torch.Tensor | None = None


@dataclass(frozen=True)
class _Ahead:
    """The next step's input-layer pre-activations ``h`` [K, B, F], computed in this
    step's sweep: for step ``step``, from its transposed inputs ``xt``, with the input
    layer's weights and bias at ``versions``."""

    step: int
    xt: np.ndarray
    h: torch.Tensor
    versions: tuple[int, ...]


@dataclass
class DirectStep:
    """The direct step of one stack; it keeps what the last sweep computed ahead."""

    model: StackedMLP
    optimizer: Adam
    ahead: _Ahead | None = None
    saved: list[_Saved] = field(default_factory=list)
    params: list[torch.Tensor] = field(init=False)  # in the optimizer state's order
    i0: int = field(init=False)  # the input layer's weights among them
    rest: list[int] = field(init=False)  # and every other parameter's index

    def __post_init__(self) -> None:
        # Once per stack, not per step: the step is the hot path.
        self.params = list(self.model.parameters())
        self.i0 = next(i for i, p in enumerate(self.params) if p is self.model.weights[0])
        self.rest = [i for i in range(len(self.params)) if i != self.i0]

    def forward(
        self, step: int, inputs: Callable[[], torch.Tensor], keys: torch.Tensor | None
    ) -> tuple[torch.Tensor, np.ndarray]:
        """Logits [K, B, C] of training step ``step`` on its ``inputs()`` [K, B, D] (and
        the inputs transposed for the sweep), the running statistics moved; keeps what
        the backward needs. The inputs are only gathered when the last step did not
        look ahead to this one."""
        model = self.model
        w0, b0 = model.weights[0], model.biases[0]
        ahead = self.ahead
        if ahead is not None and ahead.step == step and ahead.versions == _versions(w0, b0):
            xt, h = ahead.xt, ahead.h
        else:
            xt = input_layer.transposed(inputs())
            h = input_layer.forward(xt, w0, b0)
        self.ahead, self.saved = None, []
        dropout_keys = host_keys(model.split_keys(keys)[0]) if model.spec.dropout > 0 else None
        for i, norm in enumerate(model.norms):
            layer_keys = None if dropout_keys is None else dropout_keys[i]
            p = model.spec.dropout if layer_keys is not None else 0.0
            if norm.kind.name == "batch":
                out, mean, var = fused.bn_relu_dropout(
                    h, norm.weight, norm.bias, norm.settings.eps, layer_keys, p
                )
                norm.update_running(mean, var, h.shape[1])
                self.saved.append(_Saved(h, out, mean, var))
            else:
                out = fused.relu_dropout(h, layer_keys, p)
                self.saved.append(_Saved(h, out))
            h = torch.baddbmm(model.biases[i + 1].unsqueeze(1), out, model.weights[i + 1])
        return h, xt

    def backward_update(
        self,
        logits: torch.Tensor,
        y: torch.Tensor,
        xt: np.ndarray,
        state: AdamState,
        rates: Rates,
        active: torch.Tensor,
        next_step: tuple[int, torch.Tensor] | None,
    ) -> None:
        """Backpropagate the mean cross-entropy of ``logits`` for labels ``y`` and take
        Adam's step of every ``active`` member; with ``next_step`` (its number and
        inputs [K, B, D]), compute its input-layer pre-activations on the way."""
        model, opt = self.model, self.optimizer
        grads = self._grads(logits, y)
        w0, b0 = model.weights[0], model.biases[0]
        params, i0, rest = self.params, self.i0, self.rest
        # The small parameters first, with the optimizer's own kernel (which counts the
        # step): the sweep's look ahead needs the updated input-layer bias.
        opt.update(
            AdamState(state.count, [state.exp_avg[i] for i in rest],
                      [state.exp_avg_sq[i] for i in rest]),
            [params[i] for i in rest], [grads[id(params[i])] for i in rest], rates, active,
            fused=True,
        )  # fmt: skip
        t = int(state.count)
        adam = input_layer.AdamStep.of(
            rates.host, active.tolist(), t, opt.beta1, opt.beta2, opt.eps_at(t)
        )
        xt_next = None if next_step is None else input_layer.transposed(next_step[1])
        h = input_layer.update(
            xt, grads[id(w0)], w0, state.exp_avg[i0], state.exp_avg_sq[i0], adam, xt_next, b0
        )
        if next_step is not None:
            self.ahead = _Ahead(next_step[0], xt_next, h, _versions(w0, b0))

    def _grads(self, logits: torch.Tensor, y: torch.Tensor) -> dict[int, torch.Tensor]:
        """Every parameter's gradient by ``id``; the input layer's weights get their
        pre-activations' gradient [K, B, F] instead (the sweep forms the rest)."""
        model = self.model
        k, b, _ = logits.shape
        g = torch.softmax(logits, -1)
        g.scatter_add_(2, y.view(k, b, 1), torch.full((k, b, 1), -1.0))
        g.div_(b)
        grads: dict[int, torch.Tensor] = {}
        for i in range(len(model.weights) - 1, 0, -1):
            saved = self.saved[i - 1]
            grads[id(model.biases[i])] = g.sum(1)
            grads[id(model.weights[i])] = torch.bmm(saved.out.transpose(1, 2), g)
            g = self._block_backward(i - 1, torch.bmm(g, model.weights[i].transpose(1, 2)), grads)
        grads[id(model.biases[0])] = g.sum(1)
        grads[id(model.weights[0])] = g
        return grads

    def _block_backward(
        self, i: int, grad: torch.Tensor, grads: dict[int, torch.Tensor]
    ) -> torch.Tensor:
        """The gradient of hidden block i's input; its norm's own go into ``grads``."""
        norm, saved, p = self.model.norms[i], self.saved[i], self.model.spec.dropout
        if norm.kind.name != "batch":
            return fused.relu_dropout_grad(grad, saved.out, p)
        g_in, g_weight, g_bias = fused.bn_relu_dropout_grad(
            grad, saved.out, saved.pre, saved.mean, saved.var, norm.settings.eps, norm.weight, p
        )
        if norm.settings.affine:
            grads[id(norm.weight)], grads[id(norm.bias)] = g_weight, g_bias
        return g_in


def _versions(*tensors: torch.Tensor) -> tuple[int, ...]:
    # Any in-place change by PyTorch (a restored checkpoint, another step) bumps a
    # version, so pre-activations computed ahead are only reused for the weights they saw.
    return tuple(t._version for t in tensors)
