"""Adam and SGD over stacked parameters, with a learning rate per member.

Each optimizer is an (init, update) pair in the optax shape: ``init(params) -> state``
and ``update(state, params, grads, rates, active) -> state``. The update is written once
for every device and every caller (the eager loop, the CUDA graph, the ICS probe); the
state's tensors and the parameters change in place, as a captured graph needs. Members
that are not ``active`` (diverged) are left out, which freezes their parameters and
their state.

The arithmetic is PyTorch's on every device:

- on a CPU, its fused Adam/SGD kernels on runs of consecutive active members sharing a
  learning rate (one call over the whole stacked tensors in the usual case). The update
  is elementwise, so a member's update is exactly what ``torch.optim.Adam(fused=True)``
  / ``SGD(fused=True)`` would do to that member alone. The fused kernels also avoid the
  slow ``sqrt`` of exact zeros that unfused Adam hits on the always-zero border-pixel
  weights of MNIST. The same update in tensor ops took 31 ms instead of 2.3 ms for a
  stack of 16 seed networks here (issue 10): one pass over memory against a dozen.
- elsewhere, the same formulas in tensor ops with the rates, the active flags and the
  step count as device tensors, so that nothing waits for the host and a CUDA graph
  replays it; a test holds the two to each other, a diverging member included.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch.optim.adam import adam as adam_kernel
from torch.optim.sgd import sgd as sgd_kernel


@dataclass(frozen=True)
class Rates:
    """The members' learning rates, as given (``host``, Python floats, what the fused
    kernels take) and as a float32 device tensor [K] (what tensor ops take)."""

    host: tuple[float, ...]
    device: torch.Tensor

    @classmethod
    def of(cls, lrs: Sequence[float], device: torch.device | str = "cpu") -> Rates:
        return cls(tuple(lrs), torch.tensor(list(lrs), dtype=torch.float32, device=device))


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


def _dense(grads: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    # The fused kernels walk a parameter and its gradient in memory order: a gradient
    # laid out otherwise (a convolution's, channels-last) would meet the wrong elements.
    return [g.contiguous() for g in grads]


def _member_shape(p: torch.Tensor) -> tuple[int, ...]:
    return (p.shape[0],) + (1,) * (p.dim() - 1)


def _active_grads(grads: Sequence[torch.Tensor], active: torch.Tensor) -> list[torch.Tensor]:
    # A diverged member's NaN gradients must not reach its optimizer state; with a zero
    # gradient and a zero learning rate its parameters stay where they were.
    return [torch.where(active.view(_member_shape(g)), g, 0.0) for g in grads]


class _TwoForms:
    """The update every optimizer shares: count the step, then apply the update in one
    of its two forms (``_fused``: PyTorch's kernels, host-side rates and flags;
    ``_tensor_ops``: device tensors only)."""

    def update(
        self,
        state,
        params: Sequence[torch.Tensor],
        grads: Sequence[torch.Tensor],
        rates: Rates,
        active: torch.Tensor,
        fused: bool | None = None,
    ):
        """One step of every active member; returns ``state`` (updated in place).
        ``fused`` chooses the form (default: the fused kernels on a CPU only)."""
        self._count(state)
        if active.device.type == "cpu" if fused is None else fused:
            self._fused(state, params, _dense(grads), rates, active.tolist())
        else:
            self._tensor_ops(state, params, grads, rates, active)
        return state

    def _count(self, state) -> None:
        """Advance the state's step count, for optimizers that keep one."""


@dataclass
class AdamState:
    """Adam's moments per parameter and the steps taken (a float32 device tensor)."""

    count: torch.Tensor
    exp_avg: list[torch.Tensor]
    exp_avg_sq: list[torch.Tensor]

    def tensors(self) -> list[torch.Tensor]:
        """Every tensor the state holds (for saving and restoring around a capture)."""
        return [self.count, *self.exp_avg, *self.exp_avg_sq]


@dataclass(frozen=True)
class Adam(_TwoForms):
    """Adam (Kingma & Ba). ``eps_before_bias_correction`` gives Keras's epsilon placement."""

    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    eps_before_bias_correction: bool = False

    def init(self, params: Sequence[torch.Tensor]) -> AdamState:
        device = params[0].device if params else "cpu"
        return AdamState(
            count=torch.zeros((), device=device),
            exp_avg=[torch.zeros_like(p) for p in params],
            exp_avg_sq=[torch.zeros_like(p) for p in params],
        )

    def _count(self, state: AdamState) -> None:
        state.count += 1

    def eps_at(self, t: int) -> float:
        """The epsilon of step ``t`` in PyTorch's placement (added after the bias
        correction of sqrt(v))."""
        if self.eps_before_bias_correction:
            # Keras adds eps to sqrt(v) before dividing by sqrt(1 - beta2^t); PyTorch after.
            # The two agree when PyTorch's eps is Keras's divided by sqrt(1 - beta2^t).
            return self.eps / math.sqrt(1.0 - self.beta2**t)
        return self.eps

    def _fused(self, state, params, grads, rates: Rates, active: list[bool]) -> None:
        t = int(state.count)
        eps = self.eps_at(t)
        for lr, members in _runs(rates.host, active):
            adam_kernel(
                [p[members] for p in params],
                [g[members] for g in grads],
                [m[members] for m in state.exp_avg],
                [v[members] for v in state.exp_avg_sq],
                [],
                # The kernel reads the step count from these and increments them; every
                # active member has taken exactly t steps.
                [torch.full((), t - 1.0, device=p.device) for p in params],
                fused=True,
                amsgrad=False,
                beta1=self.beta1,
                beta2=self.beta2,
                lr=lr,
                weight_decay=0.0,
                eps=eps,
                maximize=False,
            )

    def _tensor_ops(self, state, params, grads, rates: Rates, active: torch.Tensor) -> None:
        t = state.count
        bc1, bc2 = 1.0 - torch.pow(self.beta1, t), 1.0 - torch.pow(self.beta2, t)
        lr = rates.device * active
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
    """SGD's momentum buffers (none without momentum)."""

    momentum_buffers: list[torch.Tensor] = field(default_factory=list)

    def tensors(self) -> list[torch.Tensor]:
        """Every tensor the state holds (for saving and restoring around a capture)."""
        return list(self.momentum_buffers)


@dataclass(frozen=True)
class SGD(_TwoForms):
    """SGD with optional (Nesterov) momentum in PyTorch's convention (no dampening)."""

    momentum: float = 0.0
    nesterov: bool = False

    def __post_init__(self) -> None:
        if self.nesterov and self.momentum <= 0:
            raise ValueError("nesterov needs momentum > 0")

    def init(self, params: Sequence[torch.Tensor]) -> SGDState:
        # Zero buffers make the first step buf = g, which is what PyTorch does on step 1.
        return SGDState([torch.zeros_like(p) for p in params] if self.momentum else [])

    def _fused(self, state, params, grads, rates: Rates, active: list[bool]) -> None:
        for lr, members in _runs(rates.host, active):
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

    def _tensor_ops(self, state, params, grads, rates: Rates, active: torch.Tensor) -> None:
        lr = rates.device * active
        grads = _active_grads(grads, active)
        buffers = state.momentum_buffers or [None] * len(params)
        for p, g, buf in zip(params, grads, buffers, strict=True):
            if buf is not None:
                buf.mul_(self.momentum).add_(g)
                g = g.add(buf, alpha=self.momentum) if self.nesterov else buf
            p.sub_(g * lr.view(_member_shape(p)))


Optimizer = Adam | SGD
OptimizerState = AdamState | SGDState
