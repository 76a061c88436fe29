"""Fused CPU kernels for the CNN's conv block: batch norm -> 2×2 max-pool -> ReLU.

Written as PyTorch ops, the block reads and writes the whole ``[B, K·C, H, W]`` map some
ten times forward and backward (BN's statistics and output, the pooling and its
indices, the zero-filled gradient it scatters into, BN's backward), and at a stack's
size those maps leave every cache. Here the forward reads the map twice (statistics in
one pass, then normalize + pool + ReLU, writing only the pooled quarter and a one-byte
argmax)
and the backward reads it once and writes its gradient once. ReLU is non-decreasing,
so applying it after the maximum is the same as before it.

Arrays are channels-last (NHWC, ``[B, H, W, C]``): a position's channels are
contiguous, so the inner loops run over channels. Statistics are per channel (a member's
channel never meets another member's), summed per example in float64 and then over the
examples in order, so the result does not depend on the thread count; the variance is
biased, for normalisation, as BN's. Results agree with PyTorch's ops to float rounding
(closer to float64 than PyTorch's own channels-last BN); the tests hold them to it,
forward and backward.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit, prange

_FAST = {"reassoc"}  # as in models.fused: NaN/inf must stay visible


@njit(parallel=True, cache=True, fastmath=_FAST)
def _channel_sums(x, sums, squares):
    # per example b and channel c: the sum of x and of x^2 over b's positions (float64)
    n_b, n_h, n_w, n_c = x.shape
    for b in prange(n_b):
        s, q = sums[b], squares[b]
        s[:] = 0.0
        q[:] = 0.0
        for h in range(n_h):
            for w in range(n_w):
                xr = x[b, h, w]
                for c in range(n_c):
                    v = np.float64(xr[c])
                    s[c] += v
                    q[c] += v * v


@njit(parallel=True, cache=True, fastmath=_FAST)
def _normalize_pool_relu(x, mean, rstd, weight, shift, out, arg, top):
    # out: ReLU of the window's largest normalized value; arg: where it was (0-3);
    # top: its x-hat, which the backward needs and would otherwise read x again for
    n_b, _, _, n_c = x.shape
    _, n_h2, n_w2, _ = out.shape
    for task in prange(n_b * n_h2):
        b, i = task // n_h2, task % n_h2
        for j in range(n_w2):
            x0, x1 = x[b, 2 * i, 2 * j], x[b, 2 * i, 2 * j + 1]
            x2, x3 = x[b, 2 * i + 1, 2 * j], x[b, 2 * i + 1, 2 * j + 1]
            o, a, t = out[b, i, j], arg[b, i, j], top[b, i, j]
            for c in range(n_c):
                m, r, g, s = mean[c], rstd[c], weight[c], shift[c]
                xh = (x0[c] - m) * r
                best, at, best_xh = xh * g + s, 0, xh
                xh = (x1[c] - m) * r
                y = xh * g + s
                if y > best:
                    best, at, best_xh = y, 1, xh
                xh = (x2[c] - m) * r
                y = xh * g + s
                if y > best:
                    best, at, best_xh = y, 2, xh
                xh = (x3[c] - m) * r
                y = xh * g + s
                if y > best:
                    best, at, best_xh = y, 3, xh
                o[c] = np.float32(0.0) if best <= 0 else best  # NaN passes, like relu
                a[c] = at
                t[c] = best_xh


@njit(parallel=True, cache=True, fastmath=_FAST)
def _pooled_grad_sums(grad, out, top, sum_g, sum_gx):
    # per example: sums of the gradient reaching BN's output, and of it times x-hat
    n_b, n_h2, n_w2, n_c = grad.shape
    for b in prange(n_b):
        sg, sgx = sum_g[b], sum_gx[b]
        sg[:] = 0.0
        sgx[:] = 0.0
        for i in range(n_h2):
            for j in range(n_w2):
                g, o, t = grad[b, i, j], out[b, i, j], top[b, i, j]
                for c in range(n_c):
                    if o[c] > 0:
                        sg[c] += g[c]
                        sgx[c] += g[c] * t[c]


@njit(parallel=True, cache=True, fastmath=_FAST)
def _input_grad(grad, out, arg, x, mean, rstd, coef, mean_g, mean_gx, grad_in):
    n_b, n_h, n_w, n_c = x.shape
    _, n_h2, n_w2, _ = grad.shape
    for task in prange(n_b * n_h):
        b, h = task // n_h, task % n_h
        i = h // 2
        for w in range(n_w):
            j = w // 2
            inside = i < n_h2 and j < n_w2
            q = (h % 2) * 2 + w % 2
            xr, gi = x[b, h, w], grad_in[b, h, w]
            for c in range(n_c):
                gy = np.float32(0.0)
                if inside and arg[b, i, j, c] == q and out[b, i, j, c] > 0:
                    gy = grad[b, i, j, c]
                xh = (xr[c] - mean[c]) * rstd[c]
                gi[c] = coef[c] * (gy - mean_g[c] - xh * mean_gx[c])


def _nhwc(t: torch.Tensor) -> np.ndarray:
    """A channels-last [B, C, H, W] tensor's memory as a [B, H, W, C] array."""
    return t.detach().permute(0, 2, 3, 1).numpy()


def _pooled(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Outputs of ``_normalize_pool_relu``: the pooled map (channels-last), and per
    window the argmax and the x-hat there ([B, H/2, W/2, C])."""
    b, c, h, w = x.shape
    out = torch.empty(b, c, h // 2, w // 2, memory_format=torch.channels_last)
    arg = torch.empty(b, h // 2, w // 2, c, dtype=torch.uint8)
    return out, arg, torch.empty(b, h // 2, w // 2, c)


class BatchNormPoolRelu(torch.autograd.Function):
    """Training-mode batch norm, 2×2 max-pool and ReLU of ``x`` [B, C, H, W]
    (channels-last) in one kernel each way. Returns the pooled output and the batch
    mean and biased variance [C] (for the running statistics; not differentiable)."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps: float):
        x = x.contiguous(memory_format=torch.channels_last)
        xs, n_c = _nhwc(x), x.shape[1]
        count = x.numel() // n_c
        sums, squares = np.empty((2, x.shape[0], n_c), np.float64)
        _channel_sums(xs, sums, squares)
        mean64 = sums.sum(0) / count
        # one pass: in float64 the cancellation in E[x²] - E[x]² costs nothing a conv
        # map's values could reach (the MLP's kernels keep float32 inputs two-pass)
        var = np.maximum(squares.sum(0) / count - mean64 * mean64, 0.0).astype(np.float32)
        mean = mean64.astype(np.float32)
        rstd = (np.float32(1.0) / np.sqrt(var + np.float32(eps))).astype(np.float32)
        out, arg, top = _pooled(x)
        _normalize_pool_relu(xs, mean, rstd, weight.detach().numpy(), bias.detach().numpy(),
                             _nhwc(out), arg.numpy(), top.numpy())  # fmt: skip
        mean_t, var_t, rstd_t = (torch.from_numpy(a) for a in (mean, var, rstd))
        ctx.save_for_backward(x, out, arg, top, mean_t, rstd_t, weight)
        ctx.mark_non_differentiable(mean_t, var_t)
        return out, mean_t, var_t

    @staticmethod
    def backward(ctx, grad, _grad_mean, _grad_var):
        x, out, arg, top, mean, rstd, weight = ctx.saved_tensors
        grad = grad.contiguous(memory_format=torch.channels_last)
        n_c = x.shape[1]
        count = x.numel() // n_c
        partial_g, partial_gx = np.empty((2, x.shape[0], n_c), np.float64)
        g, o = _nhwc(grad), _nhwc(out)
        _pooled_grad_sums(g, o, top.numpy(), partial_g, partial_gx)
        sum_g, sum_gx = partial_g.sum(0), partial_gx.sum(0)
        w = weight.detach().numpy()
        coef = w * rstd.numpy()
        mean_g = (sum_g / count).astype(np.float32)
        mean_gx = (sum_gx / count).astype(np.float32)
        grad_in = torch.empty_like(x, memory_format=torch.channels_last)
        _input_grad(g, o, arg.numpy(), _nhwc(x), mean.numpy(), rstd.numpy(), coef, mean_g,
                    mean_gx, _nhwc(grad_in))  # fmt: skip
        grad_weight = torch.from_numpy(sum_gx.astype(np.float32))
        grad_bias = torch.from_numpy(sum_g.astype(np.float32))
        return grad_in, grad_weight.view_as(weight), grad_bias.view_as(weight), None


@torch.no_grad()
def bn_pool_relu_eval(x, weight, bias, running_mean, running_var, eps: float) -> torch.Tensor:
    """Eval-mode batch norm (running statistics), 2×2 max-pool and ReLU in one pass."""
    x = x.contiguous(memory_format=torch.channels_last)
    rstd = torch.rsqrt(running_var + eps)
    out, arg, top = _pooled(x)
    _normalize_pool_relu(_nhwc(x), running_mean.numpy(), rstd.numpy(), weight.numpy(),
                         bias.numpy(), _nhwc(out), arg.numpy(), top.numpy())  # fmt: skip
    return out
