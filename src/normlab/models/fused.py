"""Fused CPU kernels for the hidden block: [batch norm ->] ReLU -> dropout.

Written as PyTorch ops, the block is a chain of ~10 elementwise passes forward and as
many backward, each reading and writing the whole [K, B, width] activation, plus a
dropout mask drawn element by element. Here each direction is one or two passes with
the mask computed in registers (``normlab.models.dropout``), compiled by Numba and run
on all threads. The arithmetic is the textbook one (two-pass variance, biased for
normalisation), so results agree with the PyTorch formulation to float rounding; the
tests hold them to it, forward and backward.

The kernels take float32 [K, B, width] arrays; every statistic is per member (k) and
feature, over the batch (b), as in ``normlab.models.norms.BatchNorm``.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import torch
from numba import njit, prange

from normlab.models.dropout import GOLDEN, MIX1, MIX2, threshold

_G, _M1, _M2 = np.uint64(GOLDEN), np.uint64(MIX1), np.uint64(MIX2)
_LOW = np.uint64(0xFFFFFFFF)
TILE = 64  # features per parallel task: tasks stay balanced on 2-64 threads


# Reassociation lets the compiler vectorize the sums; no flag may assume away NaN/inf,
# because a diverging run must stay visibly non-finite.
_FAST = {"reassoc"}


@njit(inline="always")
def _mix(z):
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


@njit(inline="always")
def _fill_mask(key, e0, n, thr, scale, buf):
    # buf[i] = scale if element e0 + i is kept, else 0; one hash serves two elements.
    zero = np.float32(0.0)
    i, e = 0, e0
    if e & 1 and n > 0:
        z = _mix(key + np.uint64(e >> 1) * _G)
        buf[0] = scale if (z >> np.uint64(32)) >= thr else zero
        i, e = 1, e + 1
    while i + 1 < n:
        z = _mix(key + np.uint64(e >> 1) * _G)
        buf[i] = scale if (z & _LOW) >= thr else zero
        buf[i + 1] = scale if (z >> np.uint64(32)) >= thr else zero
        i, e = i + 2, e + 2
    if i < n:
        z = _mix(key + np.uint64(e >> 1) * _G)
        buf[i] = scale if (z & _LOW) >= thr else zero


@njit(inline="always")
def _relu(v):
    # Like torch.relu, NaN passes through (a plain v > 0 test would turn it into 0).
    return np.float32(0.0) if v <= 0 else v


@njit(parallel=True, cache=True)
def _mask(keys, thr, scale, out):
    k_, n = out.shape
    for k in prange(k_):
        _fill_mask(keys[k], 0, n, thr, scale, out[k])


@njit(parallel=True, cache=True, fastmath=_FAST)
def _relu_dropout_forward(x, keys, thr, scale, use_mask, out):
    k_, b_, f_ = x.shape
    for task in prange(k_ * b_):
        k, b = task // b_, task % b_
        xr, o = x[k, b], out[k, b]
        if use_mask:
            _fill_mask(keys[k], b * f_, f_, thr, scale, o)
            for f in range(f_):
                o[f] = _relu(xr[f]) * o[f]
        else:
            for f in range(f_):
                o[f] = _relu(xr[f])


@njit(parallel=True, cache=True, fastmath=_FAST)
def _relu_dropout_backward(grad, out, scale, grad_in):
    k_, b_, f_ = out.shape
    for task in prange(k_ * b_):
        k, b = task // b_, task % b_
        g, o, gi = grad[k, b], out[k, b], grad_in[k, b]
        for f in range(f_):
            gi[f] = np.float32(0.0) if o[f] <= 0 else g[f] * scale


@njit(parallel=True, cache=True, fastmath=_FAST)
def _bn_relu_dropout_forward(
    x, weight, bias, eps, batch_stats, mean, var, keys, thr, scale, use_mask, out
):
    k_, b_, f_ = x.shape
    tiles = (f_ + TILE - 1) // TILE
    for task in prange(k_ * tiles):
        k, f0 = task // tiles, (task % tiles) * TILE
        n = min(f_, f0 + TILE) - f0
        m, v = mean[k, f0 : f0 + n], var[k, f0 : f0 + n]
        if batch_stats:
            acc = np.zeros(n, np.float64)
            for b in range(b_):
                xr = x[k, b, f0 : f0 + n]
                for i in range(n):
                    acc[i] += xr[i]
            for i in range(n):
                m[i] = acc[i] / b_
            acc[:] = 0.0
            for b in range(b_):
                xr = x[k, b, f0 : f0 + n]
                for i in range(n):
                    d = np.float64(xr[i] - m[i])
                    acc[i] += d * d
            for i in range(n):
                v[i] = acc[i] / b_
        gain = np.empty(n, np.float32)
        for i in range(n):
            gain[i] = weight[k, f0 + i] * (np.float32(1.0) / np.float32(math.sqrt(v[i] + eps)))
        shift = bias[k, f0 : f0 + n]
        keep = np.empty(n, np.float32)
        for b in range(b_):
            xr, o = x[k, b, f0 : f0 + n], out[k, b, f0 : f0 + n]
            if use_mask:
                _fill_mask(keys[k], b * f_ + f0, n, thr, scale, keep)
                for i in range(n):
                    o[i] = _relu((xr[i] - m[i]) * gain[i] + shift[i]) * keep[i]
            else:
                for i in range(n):
                    o[i] = _relu((xr[i] - m[i]) * gain[i] + shift[i])


@njit(parallel=True, cache=True, fastmath=_FAST)
def _bn_relu_dropout_backward(
    grad, out, x, mean, var, eps, weight, scale, grad_in, grad_weight, grad_bias
):
    k_, b_, f_ = x.shape
    tiles = (f_ + TILE - 1) // TILE
    for task in prange(k_ * tiles):
        k, f0 = task // tiles, (task % tiles) * TILE
        n = min(f_, f0 + TILE) - f0
        m = mean[k, f0 : f0 + n]
        rstd = np.empty(n, np.float32)
        for i in range(n):
            rstd[i] = np.float32(1.0) / np.float32(math.sqrt(var[k, f0 + i] + eps))
        sum_g, sum_gx = np.zeros(n, np.float64), np.zeros(n, np.float64)
        for b in range(b_):
            g, o, xr = grad[k, b, f0 : f0 + n], out[k, b, f0 : f0 + n], x[k, b, f0 : f0 + n]
            for i in range(n):
                gv = np.float32(0.0) if o[i] <= 0 else g[i] * scale
                sum_g[i] += gv
                sum_gx[i] += gv * ((xr[i] - m[i]) * rstd[i])
        coef = np.empty(n, np.float32)
        mean_g, mean_gx = np.empty(n, np.float32), np.empty(n, np.float32)
        for i in range(n):
            grad_weight[k, f0 + i] = sum_gx[i]
            grad_bias[k, f0 + i] = sum_g[i]
            coef[i] = weight[k, f0 + i] * rstd[i]
            mean_g[i], mean_gx[i] = sum_g[i] / b_, sum_gx[i] / b_
        for b in range(b_):
            g, o, xr = grad[k, b, f0 : f0 + n], out[k, b, f0 : f0 + n], x[k, b, f0 : f0 + n]
            gi = grad_in[k, b, f0 : f0 + n]
            for i in range(n):
                gv = np.float32(0.0) if o[i] <= 0 else g[i] * scale
                gi[i] = coef[i] * (gv - mean_g[i] - (xr[i] - m[i]) * rstd[i] * mean_gx[i])


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().numpy()


def _dropout_scale(p: float) -> float:
    return 1.0 / (1.0 - p)


def _dropout_args(keys: np.ndarray | None, p: float) -> tuple[np.ndarray, np.uint64, float, bool]:
    if keys is None or p == 0.0:
        return np.zeros(1, np.uint64), np.uint64(0), 1.0, False
    return keys, np.uint64(threshold(p)), _dropout_scale(p), True


def mask(keys: np.ndarray, batch: int, width: int, p: float) -> torch.Tensor:
    """The same mask as ``dropout.reference_mask`` on CPU, in one pass."""
    out = torch.empty(len(keys), batch * width)
    _mask(keys, np.uint64(threshold(p)), np.float32(1.0 / (1.0 - p)), _np(out))
    return out.view(len(keys), batch, width)


def relu_dropout(x: torch.Tensor, keys: np.ndarray | None, p: float) -> torch.Tensor:
    """relu(x) * mask for x [K, B, F] (``keys`` None or ``p`` 0: no dropout)."""
    x = x.contiguous()
    keys_, thr, scale, use_mask = _dropout_args(keys, p)
    out = torch.empty_like(x)
    _relu_dropout_forward(_np(x), keys_, thr, np.float32(scale), use_mask, _np(out))
    return out


def relu_dropout_grad(grad: torch.Tensor, out: torch.Tensor, p: float) -> torch.Tensor:
    """The input gradient of ``relu_dropout`` given its output ``out``: ``grad`` where the
    output is > 0, scaled by the kept elements' 1 / (1 − p)."""
    grad_in = torch.empty_like(out)
    scale = np.float32(_dropout_scale(p))
    _relu_dropout_backward(_np(grad.contiguous()), _np(out), scale, _np(grad_in))
    return grad_in


def bn_relu_dropout(x, weight, bias, eps: float, keys: np.ndarray | None, p: float):
    """Training-mode batch norm, ReLU and dropout of x [K, B, F]: the output and the
    batch mean and biased variance [K, F]."""
    x = x.contiguous()
    k, _, f = x.shape
    keys_, thr, scale, use_mask = _dropout_args(keys, p)
    out = torch.empty_like(x)
    mean, var = torch.empty(k, f), torch.empty(k, f)
    _bn_relu_dropout_forward(
        _np(x), _np(weight), _np(bias), np.float32(eps), True, _np(mean), _np(var),
        keys_, thr, np.float32(scale), use_mask, _np(out),
    )  # fmt: skip
    return out, mean, var


def bn_relu_dropout_grad(grad, out, x, mean, var, eps: float, weight, p: float):
    """The gradients of ``bn_relu_dropout`` (input, gain, shift) given its input ``x``,
    output ``out`` and batch statistics."""
    grad_in = torch.empty_like(x)
    grad_weight, grad_bias = torch.empty_like(weight), torch.empty_like(weight)
    _bn_relu_dropout_backward(
        _np(grad.contiguous()), _np(out), _np(x), _np(mean), _np(var), np.float32(eps),
        _np(weight), np.float32(_dropout_scale(p)), _np(grad_in), _np(grad_weight),
        _np(grad_bias),
    )  # fmt: skip
    return grad_in, grad_weight, grad_bias


class ReluDropout(torch.autograd.Function):
    """``relu_dropout`` with its gradient, for autograd."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, keys: np.ndarray | None, p: float) -> torch.Tensor:
        out = relu_dropout(x, keys, p)
        ctx.save_for_backward(out)
        ctx.p = p if keys is not None else 0.0
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (out,) = ctx.saved_tensors
        return relu_dropout_grad(grad, out, ctx.p), None, None


class BatchNormReluDropout(torch.autograd.Function):
    """``bn_relu_dropout`` with its gradients, for autograd (mean and variance are not
    differentiable; they feed the running statistics)."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps: float, keys: np.ndarray | None, p: float):
        x = x.contiguous()
        out, mean, var = bn_relu_dropout(x, weight, bias, eps, keys, p)
        ctx.save_for_backward(x, out, mean, var, weight)
        ctx.eps, ctx.p = eps, p if keys is not None else 0.0
        ctx.mark_non_differentiable(mean, var)
        return out, mean, var

    @staticmethod
    def backward(ctx, grad, _grad_mean, _grad_var):
        x, out, mean, var, weight = ctx.saved_tensors
        grads = bn_relu_dropout_grad(grad, out, x, mean, var, ctx.eps, weight, ctx.p)
        return *grads, None, None, None


@torch.no_grad()
def bn_relu_eval_(x: torch.Tensor, weight, bias, running_mean, running_var, eps: float):
    """Eval-mode batch norm (running statistics) and ReLU, in place in one pass.

    ``x`` may be a strided view (the shared-input evaluation layout); it is returned.
    """
    xs = _np(x)
    _bn_relu_dropout_forward(
        xs, _np(weight), _np(bias), np.float32(eps), False, _np(running_mean),
        _np(running_var), np.zeros(1, np.uint64), np.uint64(0), np.float32(1.0), False, xs,
    )  # fmt: skip
    return x


def set_threads(threads: int) -> None:
    """Run the kernels on ``threads`` threads (at most the cores Numba found)."""
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
