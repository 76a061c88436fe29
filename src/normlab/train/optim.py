"""Adam and SGD over stacked parameters, with a learning rate per member.

Each optimizer is a pair in the optax shape: ``init(params) -> state`` and
``step(state, params, grads, lrs, active)``, updating in place. The arithmetic is
PyTorch's own fused kernels applied to slices of the stacked tensors; the update is
elementwise, so a member's update is exactly what ``torch.optim.Adam(fused=True)`` /
``SGD(fused=True)`` would do to that member alone. The fused kernels also avoid the
slow ``sqrt`` of exact zeros that the unfused Adam hits on the always-zero border-pixel
weights of MNIST.

One kernel call covers each run of consecutive members that share a learning rate, so
a stack with one rate is one call over the whole tensors (the floor the performance
benchmark measures). Members that are not ``active`` (diverged) are left out, which
freezes their parameters.

``device_step`` is the same update written in tensor ops with the learning rates, the
active flags and the step count as device tensors, so that it can be captured in a CUDA
graph (``normlab.train.cuda_graph``) and replayed without the host deciding anything.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch.optim.adam import adam as adam_kernel
from torch.optim.sgd import sgd as sgd_kernel


def _runs(lrs: Sequence[float], active: Sequence[bool]) -> list[tuple[float, slice]]:
    """Maximal runs of consecutive active members that share a learning rate."""
    runs: list[tuple[float, slice]] = []
    start = None
    for k, (lr, on) in enumerate([*zip(lrs, active, strict=True), (math.nan, False)]):
        if start is not None and (not on or lr != lrs[start]):
            runs.append((lrs[start], slice(start, k)))
            start = None
        if on and start is None:
            start = k
    return runs


def _member_shape(p: torch.Tensor) -> tuple[int, ...]:
    return (p.shape[0],) + (1,) * (p.dim() - 1)


def _active_grads(grads: Sequence[torch.Tensor], active: torch.Tensor) -> list[torch.Tensor]:
    # A diverged member's NaN gradients must not reach its optimizer state; with a zero
    # gradient and a zero learning rate its parameters stay where they were.
    return [torch.where(active.view(_member_shape(g)), g, 0.0) for g in grads]


@dataclass
class AdamState:
    exp_avg: list[torch.Tensor]
    exp_avg_sq: list[torch.Tensor]
    t: int = 0

    def tensors(self) -> list[torch.Tensor]:
        """Every tensor the state holds (for saving and restoring around a capture)."""
        return [*self.exp_avg, *self.exp_avg_sq]


@dataclass(frozen=True)
class Adam:
    """Adam (Kingma & Ba). ``eps_before_bias_correction`` gives Keras's epsilon placement."""

    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    eps_before_bias_correction: bool = False

    def init(self, params: Sequence[torch.Tensor]) -> AdamState:
        return AdamState(
            exp_avg=[torch.zeros_like(p) for p in params],
            exp_avg_sq=[torch.zeros_like(p) for p in params],
        )

    def step(
        self,
        state: AdamState,
        params: Sequence[torch.Tensor],
        grads: Sequence[torch.Tensor],
        lrs: Sequence[float],
        active: Sequence[bool],
    ) -> None:
        state.t += 1
        eps = self.eps
        if self.eps_before_bias_correction:
            # Keras adds eps to sqrt(v) before dividing by sqrt(1 - beta2^t); PyTorch after.
            # The two agree when PyTorch's eps is Keras's divided by sqrt(1 - beta2^t).
            eps = self.eps / math.sqrt(1.0 - self.beta2**state.t)
        for lr, members in _runs(lrs, active):
            adam_kernel(
                [p[members] for p in params],
                [g[members] for g in grads],
                [m[members] for m in state.exp_avg],
                [v[members] for v in state.exp_avg_sq],
                [],
                # The kernel reads the step count from these and increments them; every
                # active member has taken exactly t steps.
                [torch.full((), state.t - 1.0, device=p.device) for p in params],
                fused=True,
                amsgrad=False,
                beta1=self.beta1,
                beta2=self.beta2,
                lr=lr,
                weight_decay=0.0,
                eps=eps,
                maximize=False,
            )

    def device_step(
        self,
        state: AdamState,
        params: Sequence[torch.Tensor],
        grads: Sequence[torch.Tensor],
        lrs: torch.Tensor,
        active: torch.Tensor,
        t: torch.Tensor,
    ) -> None:
        """``step`` with rates [K], active flags [K] and the 1-based step count ``t`` (0-d)
        as tensors; ``state.t`` is not used."""
        bc1, bc2 = 1.0 - torch.pow(self.beta1, t), 1.0 - torch.pow(self.beta2, t)
        lr = lrs * active
        if self.eps_before_bias_correction:
            step_size, v_scale = lr * (bc2.sqrt() / bc1), None
        else:
            step_size, v_scale = lr / bc1, bc2.rsqrt()
        for p, g, m, v in zip(
            params, _active_grads(grads, active), state.exp_avg, state.exp_avg_sq, strict=True
        ):
            m.lerp_(g, 1.0 - self.beta1)
            v.mul_(self.beta2).addcmul_(g, g, value=1.0 - self.beta2)
            denom = v.sqrt() if v_scale is None else v.sqrt() * v_scale
            p.sub_(m * step_size.view(_member_shape(p)) / denom.add_(self.eps))


@dataclass
class SGDState:
    momentum_buffers: list[torch.Tensor] = field(default_factory=list)

    def tensors(self) -> list[torch.Tensor]:
        """Every tensor the state holds (for saving and restoring around a capture)."""
        return list(self.momentum_buffers)


@dataclass(frozen=True)
class SGD:
    """SGD with optional (Nesterov) momentum in PyTorch's convention (no dampening)."""

    momentum: float = 0.0
    nesterov: bool = False

    def __post_init__(self) -> None:
        if self.nesterov and self.momentum <= 0:
            raise ValueError("nesterov needs momentum > 0")

    def init(self, params: Sequence[torch.Tensor]) -> SGDState:
        # Zero buffers make the first step buf = g, which is what PyTorch does on step 1.
        return SGDState([torch.zeros_like(p) for p in params] if self.momentum else [])

    def step(
        self,
        state: SGDState,
        params: Sequence[torch.Tensor],
        grads: Sequence[torch.Tensor],
        lrs: Sequence[float],
        active: Sequence[bool],
    ) -> None:
        for lr, members in _runs(lrs, active):
            sgd_kernel(
                [p[members] for p in params],
                [g[members] for g in grads],
                [b[members] for b in state.momentum_buffers]
                if self.momentum
                else [None] * len(params),
                fused=True,
                weight_decay=0.0,
                momentum=self.momentum,
                lr=lr,
                dampening=0.0,
                nesterov=self.nesterov,
                maximize=False,
            )

    def device_step(
        self,
        state: SGDState,
        params: Sequence[torch.Tensor],
        grads: Sequence[torch.Tensor],
        lrs: torch.Tensor,
        active: torch.Tensor,
        t: torch.Tensor,
    ) -> None:
        """``step`` with rates [K] and active flags [K] as tensors (``t`` is unused)."""
        lr = lrs * active
        grads = _active_grads(grads, active)
        buffers = state.momentum_buffers or [None] * len(params)
        for p, g, buf in zip(params, grads, buffers, strict=True):
            if buf is not None:
                buf.mul_(self.momentum).add_(g)
                g = g.add(buf, alpha=self.momentum) if self.nesterov else buf
            p.sub_(g * lr.view(_member_shape(p)))


Optimizer = Adam | SGD
