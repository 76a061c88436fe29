"""Dropout masks from a counter-based generator, identical on every device.

Each member's mask for one layer at one step is a pure function of a 64-bit key. The
key comes from the member's dropout stream, the step and the layer; element ``e`` of the
mask takes 32 bits of SplitMix64 (Steele et al. 2014) at position ``e // 2`` after the
key. The element is kept when those 32 bits are at least ``round(p * 2**32)``, so the
keep probability is ``1 - p`` to within 2**-33 (``torch.rand`` resolves p to 2**-24).

Why not ``torch.rand`` with a generator per member: PyTorch's CPU generator is a serial
Mersenne Twister, ~3-7 ns per number here. At batch 256 a stack of 16 needs 2 million
numbers per step, which cost as much as a quarter of the step's matmuls. A counter-based
mask costs a few integer operations per element and fuses into the activation kernel
(``normlab.models.fused``); this module also computes it with tensor ops, which is what
runs on a GPU and what the fused CPU kernels are tested against.

The same generator draws a GAN's latent noise (``gaussian``): per member, a pure
function of a key, on any device, inside a captured graph too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

GOLDEN = 0x9E3779B97F4A7C15
MIX1 = 0xBF58476D1CE4E5B9
MIX2 = 0x94D049BB133111EB
_U64 = (1 << 64) - 1
MAX_LAYERS = 256  # layers per step in the key counter; far above any MLP here


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def threshold(p: float) -> int:
    """The 32-bit threshold below which an element is dropped, for drop probability p."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {p}")
    return min(round(p * 2**32), 2**32 - 1)


def step_keys(bases: Sequence[int], step: int, layers: int) -> np.ndarray:
    """Keys [layers, K] (uint64) for every member's masks at training step ``step``.

    ``bases`` are the members' dropout-stream seeds; the key is SplitMix64 at counter
    position ``step * MAX_LAYERS + layer + 1`` of each base, so keys never repeat
    within a run and are unrelated across members. (``step_keys_tensor`` computes it.)
    """
    keys = step_keys_tensor(key_bases(bases, "cpu"), torch.tensor(step), layers)
    return keys.numpy().view(np.uint64)


def _logical_shift(z: torch.Tensor, bits: int) -> torch.Tensor:
    # int64 tensors shift arithmetically; masking off the sign copies makes it logical.
    return (z >> bits) & ((1 << (64 - bits)) - 1)


def _mix(z: torch.Tensor) -> torch.Tensor:
    """SplitMix64's output function (Steele et al. 2014) on int64 tensors, whose
    arithmetic wraps modulo 2**64 like the unsigned arithmetic it stands for."""
    z = (z ^ _logical_shift(z, 30)) * _signed(MIX1)
    z = (z ^ _logical_shift(z, 27)) * _signed(MIX2)
    return z ^ _logical_shift(z, 31)


def key_bases(bases: Sequence[int], device: torch.device | str) -> torch.Tensor:
    """The members' dropout-stream seeds as an int64 tensor [K], for ``step_keys_tensor``."""
    return torch.tensor([_signed(b & _U64) for b in bases], dtype=torch.int64, device=device)


def step_keys_tensor(bases: torch.Tensor, step: torch.Tensor, layers: int) -> torch.Tensor:
    """``step_keys`` computed on the device from tensors: bases [K] and a 0-d step count.

    Nothing is read back to the host, so a captured CUDA graph derives each step's keys
    itself.
    """
    if layers > MAX_LAYERS:
        raise ValueError(f"at most {MAX_LAYERS} hidden layers take dropout, got {layers}")
    layer = torch.arange(1, layers + 1, dtype=torch.int64, device=bases.device)
    counter = step * MAX_LAYERS + layer
    return _mix(bases.unsqueeze(0) + counter.unsqueeze(1) * _signed(GOLDEN))


def gaussian(keys: torch.Tensor, count: int) -> torch.Tensor:
    """Standard normal values [K, count] (float32), member k's a pure function of
    ``keys[k]`` (int64, e.g. a row of ``step_keys_tensor``): Box-Muller on the two 32-bit
    halves of SplitMix64 at positions 1, 2, ... after the key, each pair of uniforms
    giving one value (the cosine branch)."""
    positions = torch.arange(1, count + 1, dtype=torch.int64, device=keys.device)
    z = _mix(keys.unsqueeze(1) + positions * _signed(GOLDEN))
    scale = 2.0**-32
    u1 = ((z & 0xFFFFFFFF).to(torch.float64) + 1.0) * scale  # (0, 1]: the log stays finite
    u2 = _logical_shift(z, 32).to(torch.float64) * scale
    normal = torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2.0 * math.pi * u2)
    return normal.to(torch.float32)


def reference_mask(
    keys: np.ndarray | torch.Tensor,
    batch: int,
    width: int,
    p: float,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Mask [K, batch, width] with kept elements at 1/(1-p), computed with tensor ops.

    ``keys`` is one layer's row of ``step_keys`` (uint64) or of ``step_keys_tensor``.
    """
    if isinstance(keys, torch.Tensor):
        key = keys.to(device)
    else:
        key = torch.tensor([_signed(int(v)) for v in keys], dtype=torch.int64, device=device)
    k, n = len(key), batch * width
    pairs = torch.arange((n + 1) // 2, dtype=torch.int64, device=device)
    z = _mix(key.unsqueeze(1) + pairs * _signed(GOLDEN))
    lanes = torch.stack([z & 0xFFFFFFFF, _logical_shift(z, 32)], dim=-1).reshape(k, -1)[:, :n]
    keep = lanes >= threshold(p)
    return (keep.to(torch.float32) * (1.0 / (1.0 - p))).view(k, batch, width)
