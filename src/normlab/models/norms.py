"""Normalization layers for stacks: inputs [K, B, F], statistics and parameters per member.

Every layer keeps one gain and one shift per member and feature ([K, F]); the batch
variants keep running statistics per member too. Batch statistics are always over the
batch dimension of one member, never across members, so members stay independent.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

NORMS: tuple[str, ...] = ("none", "batch", "layer", "group", "rms", "batch_renorm", "ghost_batch")
POSITIONS: tuple[str, ...] = ("before", "after")


@dataclass(frozen=True)
class NormSettings:
    """Numeric settings shared by the normalization layers of one network."""

    eps: float = 1e-3
    momentum: float = 0.01  # PyTorch convention: weight of the new batch statistic
    unbiased_running_var: bool = False
    groups: int = 32
    ghost_batch_size: int = 32
    renorm_rmax: float = 3.0
    renorm_dmax: float = 5.0
    renorm_ramp_steps: int = 5000


class _Affine(nn.Module):
    """Per-member, per-feature gain (and optionally shift)."""

    def __init__(self, k: int, features: int, *, shift: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(k, features))
        self.bias = nn.Parameter(torch.zeros(k, features)) if shift else None

    def affine(self, x: torch.Tensor) -> torch.Tensor:
        y = x * self.weight.unsqueeze(1)
        return y if self.bias is None else y + self.bias.unsqueeze(1)


class BatchNorm(_Affine):
    """Batch normalization (Ioffe & Szegedy 2015) over each member's batch."""

    def __init__(self, k: int, features: int, settings: NormSettings) -> None:
        super().__init__(k, features)
        self.settings = settings
        self.register_buffer("running_mean", torch.zeros(k, features))
        self.register_buffer("running_var", torch.ones(k, features))

    def batch_stats(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
        """Centred input, batch mean and biased variance [K, F], and the count per statistic."""
        mean = x.mean(1, keepdim=True)
        centred = x - mean
        # From centred values: Tensor.var over the batch dim was ~7x slower here.
        var = (centred * centred).mean(1, keepdim=True)
        return centred, mean.squeeze(1), var.squeeze(1), x.shape[1]

    @torch.no_grad()
    def update_running(self, mean: torch.Tensor, var: torch.Tensor, count: int) -> None:
        s = self.settings
        if s.unbiased_running_var and count > 1:
            var = var * (count / (count - 1))
        self.running_mean.lerp_(mean, s.momentum)
        self.running_var.lerp_(var, s.momentum)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        eps = self.settings.eps
        if not self.training:
            return self.affine(
                (x - self.running_mean.unsqueeze(1))
                * torch.rsqrt(self.running_var.unsqueeze(1) + eps)
            )
        centred, mean, var, count = self.batch_stats(x)
        self.update_running(mean.detach(), var.detach(), count)
        return self.affine(centred * torch.rsqrt(var.unsqueeze(1) + eps))


class GhostBatchNorm(BatchNorm):
    """BN whose statistics come from ghost batches of ``ghost_batch_size`` (Hoffer et al. 2017).

    The running statistics move once per step, towards the mean of the ghost batches'
    means and variances. A batch no larger than one ghost batch is plain BN.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, b, f = x.shape
        g = self.settings.ghost_batch_size
        if not self.training or b <= g:
            return super().forward(x)
        if b % g:
            raise ValueError(f"ghost_batch_size {g} must divide the batch size {b}")
        ghosts = x.reshape(k * (b // g), g, f)
        centred, mean, var, count = self.batch_stats(ghosts)
        self.update_running(
            mean.detach().view(k, b // g, f).mean(1), var.detach().view(k, b // g, f).mean(1), count
        )
        y = centred * torch.rsqrt(var.unsqueeze(1) + self.settings.eps)
        return self.affine(y.reshape(k, b, f))


class BatchRenorm(BatchNorm):
    """Batch renormalization (Ioffe 2017).

    Training uses batch statistics corrected towards the running ones by r and d (not
    differentiated), clipped to [1/rmax, rmax] and [-dmax, dmax]. The limits ramp from
    plain BN (rmax 1, dmax 0) to their final values over ``renorm_ramp_steps`` steps, as
    the paper relaxes them, because the running statistics are meaningless at first.
    """

    def __init__(self, k: int, features: int, settings: NormSettings) -> None:
        super().__init__(k, features, settings)
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)
        s = self.settings
        # The ramp stays on the device: reading the step count back would stall a GPU.
        ramp = (self.steps / max(1, s.renorm_ramp_steps)).clamp(max=1.0)
        rmax, dmax = 1.0 + (s.renorm_rmax - 1.0) * ramp, s.renorm_dmax * ramp
        centred, mean, var, count = self.batch_stats(x)
        with torch.no_grad():
            sigma_run = torch.sqrt(self.running_var + s.eps)
            r = torch.minimum(torch.maximum(torch.sqrt(var + s.eps) / sigma_run, 1.0 / rmax), rmax)
            d = torch.minimum(torch.maximum((mean - self.running_mean) / sigma_run, -dmax), dmax)
        self.update_running(mean.detach(), var.detach(), count)
        self.steps += 1
        y = centred * torch.rsqrt(var.unsqueeze(1) + s.eps) * r.unsqueeze(1) + d.unsqueeze(1)
        return self.affine(y)


class LayerNorm(_Affine):
    """Layer normalization (Ba et al. 2016): statistics over each example's features."""

    def __init__(self, k: int, features: int, settings: NormSettings) -> None:
        super().__init__(k, features)
        self.eps = settings.eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        centred = x - x.mean(-1, keepdim=True)
        var = (centred * centred).mean(-1, keepdim=True)
        return self.affine(centred * torch.rsqrt(var + self.eps))


class GroupNorm(_Affine):
    """Group normalization (Wu & He 2018): statistics over groups of each example's features."""

    def __init__(self, k: int, features: int, settings: NormSettings) -> None:
        super().__init__(k, features)
        if features % settings.groups:
            raise ValueError(f"groups {settings.groups} must divide the layer width {features}")
        self.groups, self.eps = settings.groups, settings.eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, b, f = x.shape
        grouped = x.reshape(k, b, self.groups, f // self.groups)
        centred = grouped - grouped.mean(-1, keepdim=True)
        var = (centred * centred).mean(-1, keepdim=True)
        return self.affine((centred * torch.rsqrt(var + self.eps)).reshape(k, b, f))


class RMSNorm(_Affine):
    """RMS normalization (Zhang & Sennrich 2019): divide by the root mean square, gain only."""

    def __init__(self, k: int, features: int, settings: NormSettings) -> None:
        super().__init__(k, features, shift=False)
        self.eps = settings.eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.affine(x * torch.rsqrt((x * x).mean(-1, keepdim=True) + self.eps))


_LAYERS: dict[str, type[nn.Module]] = {
    "batch": BatchNorm,
    "ghost_batch": GhostBatchNorm,
    "batch_renorm": BatchRenorm,
    "layer": LayerNorm,
    "group": GroupNorm,
    "rms": RMSNorm,
}


def make_norm(kind: str, k: int, features: int, settings: NormSettings) -> nn.Module:
    """A stacked normalization layer of ``kind`` (``none`` gives identity)."""
    if kind == "none":
        return nn.Identity()
    if kind not in _LAYERS:
        raise ValueError(f"unknown norm {kind!r}: choose one of {', '.join(NORMS)}")
    return _LAYERS[kind](k, features, settings)
