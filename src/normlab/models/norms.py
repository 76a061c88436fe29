"""Normalization layers for stacks, on two layouts, statistics and parameters per member.

- **Features** ``[K, B, F]`` (dense layers): member k's batch of B examples with F units.
- **Channels** ``[B, K·C, H, W]`` (convolutional layers): the K members' C channels side by
  side, as a grouped convolution produces them; example b of member k is member k's own
  b-th example.

Every layer keeps one gain and one shift per member and unit ([K, units]; a channel is
a unit). The batch variants normalize over each member's batch (and, for channels, the
positions: BatchNorm2d's statistics) and keep running statistics per member too. No
statistic ever mixes members, so members stay independent.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from normlab.models.registry import NORMS, NormKind
from normlab.models.settings import NormSettings
from normlab.registry import load


def _batch_dims(x: torch.Tensor) -> tuple[int, ...]:
    """The dimensions a batch statistic reduces: the batch (and positions for channels)."""
    return (1,) if x.dim() == 3 else (0, 2, 3)


def _broadcast(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per-member, per-unit values [K, U] shaped to broadcast against ``x``."""
    return t.unsqueeze(1) if x.dim() == 3 else t.reshape(1, -1, 1, 1)


def _per_example(x: torch.Tensor, k: int, groups: int) -> torch.Tensor:
    """``x`` viewed so that the last dimension holds one normalization set: the units of
    one of ``groups`` groups of one example of one member."""
    if x.dim() == 3:
        return x.reshape(*x.shape[:2], groups, -1)
    return x.reshape(x.shape[0], k * groups, -1)


class NoNorm(nn.Identity):
    """No normalization (the ``none`` entry), so that every layer answers ``kind``."""

    kind: NormKind = NORMS["none"]


class _Affine(nn.Module):
    """Per-member, per-unit gain γ (and optionally shift β), starting at the settings'
    gain and 0. Frozen (``affine=False``) they are buffers: no optimizer sees them."""

    def __init__(self, k: int, units: int, settings: NormSettings, *, shift: bool = True):
        super().__init__()
        weight = torch.full((k, units), float(settings.gain))
        bias = torch.zeros(k, units) if shift else None
        if settings.affine:
            self.weight = nn.Parameter(weight)
            self.bias = None if bias is None else nn.Parameter(bias)
        else:
            self.register_buffer("weight", weight)
            self.register_buffer("bias", bias)

    def affine(self, x: torch.Tensor) -> torch.Tensor:
        y = x * _broadcast(self.weight, x)
        return y if self.bias is None else y + _broadcast(self.bias, x)


class BatchNorm(_Affine):
    """Batch normalization (Ioffe & Szegedy 2015) over each member's batch."""

    kind: NormKind = NORMS["batch"]

    def __init__(self, k: int, units: int, settings: NormSettings) -> None:
        super().__init__(k, units, settings)
        self.settings = settings
        self.register_buffer("running_mean", torch.zeros(k, units))
        self.register_buffer("running_var", torch.ones(k, units))

    def batch_stats(
        self, x: torch.Tensor, dims: tuple[int, ...]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
        """Centred input, batch mean and biased variance (kept dimensions), and the
        count of values per statistic."""
        mean = x.mean(dims, keepdim=True)
        centred = x - mean
        # From centred values: Tensor.var over the batch dim was ~7x slower here.
        var = (centred * centred).mean(dims, keepdim=True)
        return centred, mean, var, x.numel() // mean.numel()

    def input_variance(self, x: torch.Tensor) -> torch.Tensor:
        """The biased variance [K, units] of this layer's input ``x`` over the batch."""
        return x.var(dim=_batch_dims(x), unbiased=False).reshape(self.weight.shape)

    @torch.no_grad()
    def update_running(self, mean: torch.Tensor, var: torch.Tensor, count: int) -> None:
        """Move the running statistics towards a batch's ``mean`` and biased ``var``
        (any shape holding [K, units] values)."""
        s = self.settings
        mean, var = mean.reshape(self.weight.shape), var.reshape(self.weight.shape)
        if s.unbiased_running_var and count > 1:
            var = var * (count / (count - 1))
        self.running_mean.lerp_(mean, s.momentum)
        self.running_var.lerp_(var, s.momentum)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        eps = self.settings.eps
        if x.dim() == 4:
            return self._channels(x)
        if not self.training:
            return self.affine(
                (x - _broadcast(self.running_mean, x))
                * torch.rsqrt(_broadcast(self.running_var, x) + eps)
            )
        centred, mean, var, count = self.batch_stats(x, _batch_dims(x))
        self.update_running(mean.detach(), var.detach(), count)
        return self.affine(centred * torch.rsqrt(var + eps))

    def _channels(self, x: torch.Tensor) -> torch.Tensor:
        """BatchNorm2d of every member's channels at once: PyTorch's own kernel over the
        K·C channels (a channel's statistics never leave it, so members stay apart).
        In training its running update, at momentum 1, hands back the batch mean and
        unbiased variance, from which the running statistics move by this layer's
        convention."""
        eps, w, b = self.settings.eps, self.weight.reshape(-1), self.bias.reshape(-1)
        if not self.training:
            rm, rv = self.running_mean.reshape(-1), self.running_var.reshape(-1)
            return F.batch_norm(x, rm, rv, w, b, training=False, eps=eps)
        mean, var = torch.zeros_like(w).detach(), torch.zeros_like(w).detach()
        y = F.batch_norm(x, mean, var, w, b, training=True, momentum=1.0, eps=eps)
        count = x.numel() // x.shape[1]
        self.update_running(mean, var * ((count - 1) / count), count)
        return y


class GhostBatchNorm(BatchNorm):
    """BN whose statistics come from ghost batches of ``ghost_batch_size`` (Hoffer et al. 2017).

    The running statistics move once per step, towards the mean of the ghost batches'
    means and variances. A batch no larger than one ghost batch is plain BN.
    """

    kind: NormKind = NORMS["ghost_batch"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[1] if x.dim() == 3 else x.shape[0]
        g = self.settings.ghost_batch_size
        if not self.training or b <= g:
            return super().forward(x)
        if b % g:
            raise ValueError(f"ghost_batch_size {g} must divide the batch size {b}")
        if x.dim() == 3:  # [K·n, g, F]: each ghost batch a batch of its own
            k, _, f = x.shape
            ghosts, dims, split = x.reshape(k * (b // g), g, f), (1,), (k, b // g, f)
        else:  # [n, g, K·C, H, W]: statistics over the ghost batch and the positions
            ghosts, dims, split = x.reshape(b // g, g, *x.shape[1:]), (1, 3, 4), (b // g, -1)
        centred, mean, var, count = self.batch_stats(ghosts, dims)
        ghost_axis = 1 if x.dim() == 3 else 0
        self.update_running(
            mean.detach().reshape(split).mean(ghost_axis),
            var.detach().reshape(split).mean(ghost_axis),
            count,
        )
        y = centred * torch.rsqrt(var + self.settings.eps)
        return self.affine(y.reshape(x.shape))


class BatchRenorm(BatchNorm):
    """Batch renormalization (Ioffe 2017).

    Training uses batch statistics corrected towards the running ones by r and d (not
    differentiated), clipped to [1/rmax, rmax] and [-dmax, dmax]. The limits ramp from
    plain BN (rmax 1, dmax 0) to their final values over ``renorm_ramp_steps`` steps, as
    the paper relaxes them, because the running statistics are meaningless at first.
    """

    kind: NormKind = NORMS["batch_renorm"]

    def __init__(self, k: int, units: int, settings: NormSettings) -> None:
        super().__init__(k, units, settings)
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)
        s = self.settings
        # The ramp stays on the device: reading the step count back would stall a GPU.
        ramp = (self.steps / max(1, s.renorm_ramp_steps)).clamp(max=1.0)
        rmax, dmax = 1.0 + (s.renorm_rmax - 1.0) * ramp, s.renorm_dmax * ramp
        centred, mean, var, count = self.batch_stats(x, _batch_dims(x))
        units = self.weight.shape
        with torch.no_grad():
            sigma_run = torch.sqrt(self.running_var + s.eps)
            r = torch.sqrt(var.reshape(units) + s.eps) / sigma_run
            r = torch.minimum(torch.maximum(r, 1.0 / rmax), rmax)
            d = (mean.reshape(units) - self.running_mean) / sigma_run
            d = torch.minimum(torch.maximum(d, -dmax), dmax)
        self.update_running(mean.detach(), var.detach(), count)
        self.steps += 1
        y = centred * torch.rsqrt(var + s.eps) * _broadcast(r, x) + _broadcast(d, x)
        return self.affine(y)


class GroupNorm(_Affine):
    """Group normalization (Wu & He 2018): statistics over groups of each example's units
    (for channels: a group's channels at every position)."""

    kind: NormKind = NORMS["group"]

    def __init__(self, k: int, units: int, settings: NormSettings, groups: int | None = None):
        super().__init__(k, units, settings)
        self.groups = settings.groups if groups is None else groups
        if units % self.groups:
            raise ValueError(f"groups {self.groups} must divide the layer width {units}")
        self.eps = settings.eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:  # PyTorch's kernel: a member's groups are consecutive channels
            k, w, b = self.weight.shape[0], self.weight.reshape(-1), self.bias.reshape(-1)
            return F.group_norm(x, k * self.groups, w, b, self.eps)
        grouped = _per_example(x, self.weight.shape[0], self.groups)
        centred = grouped - grouped.mean(-1, keepdim=True)
        var = (centred * centred).mean(-1, keepdim=True)
        return self.affine((centred * torch.rsqrt(var + self.eps)).reshape(x.shape))


class LayerNorm(GroupNorm):
    """Layer normalization (Ba et al. 2016): statistics over all of each example's units
    (for channels: every channel at every position), one group."""

    kind: NormKind = NORMS["layer"]

    def __init__(self, k: int, units: int, settings: NormSettings) -> None:
        super().__init__(k, units, settings, groups=1)


class RMSNorm(_Affine):
    """RMS normalization (Zhang & Sennrich 2019): divide by the root mean square over each
    example's units, gain only."""

    kind: NormKind = NORMS["rms"]

    def __init__(self, k: int, units: int, settings: NormSettings) -> None:
        super().__init__(k, units, settings, shift=False)
        self.eps = settings.eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        per_example = _per_example(x, self.weight.shape[0], 1)
        scale = torch.rsqrt((per_example * per_example).mean(-1, keepdim=True) + self.eps)
        return self.affine((per_example * scale).reshape(x.shape))


def make_norm(kind: str, k: int, units: int, settings: NormSettings) -> nn.Module:
    """A stacked normalization layer of ``kind`` for ``units`` units (``none``: identity)."""
    entry = NORMS[kind]
    return NoNorm() if entry.layer is None else load(entry.layer)(k, units, settings)


def normalize(norm: nn.Module, x: torch.Tensor, keys: torch.Tensor | None) -> torch.Tensor:
    """``norm`` applied to ``x``; a noisy kind also gets its layer's noise ``keys`` [K]
    (None: no noise, as in evaluation)."""
    return norm(x, keys) if norm.kind.noisy else norm(x)
