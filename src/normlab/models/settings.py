"""Numeric settings of a network's normalization layers (torch-free, so that a run's
configuration can derive them without importing torch)."""

from __future__ import annotations

from dataclasses import dataclass


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
