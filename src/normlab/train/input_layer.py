"""The input layer of a stacked MLP on the CPU: its weight gradient, Adam's update and the
next step's forward pass in one sweep over its weights.

The first dense layer ``h = x W + b`` (x [K, B, D], W [K, D, F]) holds most of an MLP's
weights (the seed network's 784 × 512 of 407k). A step with autograd and a separate
optimizer sweeps W (and the memory beside it) four times: the forward matmul reads W,
the backward writes the gradient ``xᵀ g`` (as large as W), Adam reads the gradient and
reads and writes W and both moments, and the next forward reads W again. At K=16 each
sweep is 26 MB, far more than a cache holds. Here one sweep does it all, row by row
(one input feature d, all F outputs): the gradient's row is summed into a buffer that
stays in the L1 cache, Adam updates that row of W, m and v, and the updated row at once
adds its share to the next step's pre-activations. The gradient never reaches memory
and W is read once a step.

Image inputs are mostly zeros (raw or scaled MNIST pixels: 81 %), and a zero input adds
nothing to either product, so both skip it: most of the layer's multiply-adds are never
done. (A matmul library cannot know this; it is why this beats the matmul floor.)

Sums run over the batch in order in float32; Adam's arithmetic is that of PyTorch's
fused CPU kernel (``torch.optim.Adam(fused=True)``). Results agree with autograd and
the fused kernel to float rounding; ``tests/test_direct_step.py`` holds them to it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from numba import njit, prange

# Reassociation and contraction (FMA) only: never assume away NaN/inf, because a
# diverging run must stay visibly non-finite.
_FAST = {"reassoc", "contract"}
MIN_ROWS = 32  # the fewest rows a parallel task sweeps (its partial sums cost B x F)
TASKS = 8  # parallel tasks a sweep offers at least: 2-8 threads stay busy at any K


@njit(parallel=True, cache=True, fastmath=_FAST)
def _sweep(xt, g, w, m, v, active, step_size, inv_bc2_sqrt, beta1, beta2, eps, xt_next, partial):
    # xt [K, D, B]: this step's inputs, transposed (a row d's B inputs are contiguous);
    # g [K, B, F]; w, m, v [K, D, F]; xt_next [K, D, B] or empty; partial [K, P, B, F].
    k_, d_, f_, parts = w.shape[0], w.shape[1], w.shape[2], partial.shape[1]
    update, ahead = xt.shape[0] > 0, xt_next.shape[0] > 0
    b_ = xt.shape[2] if update else xt_next.shape[2]
    rows = (d_ + parts - 1) // parts
    one = np.float32(1.0)
    for task in prange(k_ * parts):
        k, p = task // parts, task % parts
        out = partial[k, p]
        out[:, :] = 0.0
        on = update and active[k]
        lr = step_size[k] if on else np.float32(0.0)
        acc = np.empty(f_, np.float32)
        for d in range(p * rows, min(d_, (p + 1) * rows)):
            wr = w[k, d]
            if on:
                acc[:] = 0.0
                xr = xt[k, d]
                for b in range(b_):
                    xv = xr[b]
                    if xv != 0:
                        gr = g[k, b]
                        for f in range(f_):
                            acc[f] += xv * gr[f]
                mr, vr = m[k, d], v[k, d]
                for f in range(f_):
                    a = acc[f]
                    mf = mr[f] * beta1 + a * (one - beta1)
                    vf = vr[f] * beta2 + a * a * (one - beta2)
                    mr[f] = mf
                    vr[f] = vf
                    wr[f] -= lr * mf / (math.sqrt(vf) * inv_bc2_sqrt + eps)
            if ahead:
                xn = xt_next[k, d]
                for b in range(b_):
                    xv = xn[b]
                    if xv != 0:
                        o = out[b]
                        for f in range(f_):
                            o[f] += xv * wr[f]


_NONE3 = np.zeros((0, 0, 0), np.float32)


def transposed(x: torch.Tensor) -> np.ndarray:
    """Inputs [K, B, D] as the sweep reads them: [K, D, B], contiguous."""
    return x.transpose(1, 2).contiguous().numpy()


def _parts(k: int, rows: int) -> int:
    """Row ranges per member: at least ``TASKS`` parallel tasks, none shorter than
    ``MIN_ROWS``. The ranges' partial sums of the next forward are added in order, so
    the result depends on the ranges; they depend on K alone, never on the thread count,
    so that a run's numbers are the same on 1 thread as on 2 (a test holds them to it)."""
    return max(1, min(-(-TASKS // k), rows // MIN_ROWS))


def _forward(partial: np.ndarray, bias: torch.Tensor) -> torch.Tensor:
    out = (
        torch.from_numpy(partial).sum(1)
        if partial.shape[1] > 1
        else torch.from_numpy(partial[:, 0])
    )
    return out.add_(bias.detach().unsqueeze(1))


def forward(xt: np.ndarray, w: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``x W + bias`` [K, B, F] for transposed inputs ``xt`` [K, D, B], skipping zeros."""
    k, d, b = xt.shape
    partial = np.empty((k, _parts(k, d), b, w.shape[2]), np.float32)
    f32 = np.float32(0.0)
    _sweep(_NONE3, _NONE3, w.detach().numpy(), _NONE3, _NONE3, np.zeros(0, np.bool_),
           np.zeros(0, np.float32), f32, f32, f32, f32, xt, partial)  # fmt: skip
    return _forward(partial, bias)


@dataclass(frozen=True)
class AdamStep:
    """The Adam step a sweep takes: each member's step size lr / (1 − β₁ᵗ) and whether
    it is active, 1 / √(1 − β₂ᵗ), the betas and epsilon (PyTorch's placement)."""

    active: np.ndarray
    step_size: np.ndarray
    inv_bc2_sqrt: float
    beta1: float
    beta2: float
    eps: float

    @classmethod
    def of(cls, lrs, active, t: int, beta1: float, beta2: float, eps: float) -> AdamStep:
        bc1, bc2 = 1.0 - beta1**t, 1.0 - beta2**t
        with np.errstate(over="ignore"):  # a huge rate is a run left to diverge, as in PyTorch
            step_size = np.asarray([lr / bc1 for lr in lrs], np.float32)
        return cls(np.asarray(active, np.bool_), step_size, 1.0 / math.sqrt(bc2), beta1, beta2, eps)


def update(
    xt: np.ndarray,
    g: torch.Tensor,
    w: torch.Tensor,
    m: torch.Tensor,
    v: torch.Tensor,
    adam: AdamStep,
    xt_next: np.ndarray | None = None,
    bias: torch.Tensor | None = None,
) -> torch.Tensor | None:
    """Adam's step of ``w`` [K, D, F] and its moments ``m``, ``v`` (in place) for the
    gradient ``xᵀ g`` of transposed inputs ``xt`` [K, D, B] and g [K, B, F]. With the
    next step's transposed inputs ``xt_next`` and the (updated) ``bias`` [K, F], returns
    their pre-activations ``x_next W + bias`` with the updated weights."""
    k, d, b = xt.shape
    parts = _parts(k, d) if xt_next is not None else 1
    partial = np.empty((k, parts, b if xt_next is not None else 0, w.shape[2]), np.float32)
    _sweep(xt, g.detach().contiguous().numpy(), w.detach().numpy(), m.numpy(), v.numpy(),
           adam.active, adam.step_size, np.float32(adam.inv_bc2_sqrt), np.float32(adam.beta1),
           np.float32(adam.beta2), np.float32(adam.eps),
           _NONE3 if xt_next is None else xt_next, partial)  # fmt: skip
    return None if xt_next is None or bias is None else _forward(partial, bias)
