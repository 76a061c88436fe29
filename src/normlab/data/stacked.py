"""Stacked MNIST (Metz et al. 2017; VEEGAN, PacGAN): three MNIST digits as the three
channels of one image, so 1,000 modes (the digit triple) instead of 10 — the sensitive
test of a generator's mode coverage.

Built from MNIST, deterministically: channel c of image i is image ``perm_c[i]`` of the
same split, each channel with its own fixed permutation (seed ``STACK_SEED``), so each
split keeps its size and every digit image appears once per channel. The label is the
mode, 100·d₀ + 10·d₁ + d₂.
"""

from __future__ import annotations

import numpy as np

STACK_SEED = 2017


def stack_digits(splits: tuple[np.ndarray, ...], channels: int) -> tuple[np.ndarray, ...]:
    """``splits`` (train images [N, 28, 28], train labels, test images, test labels) with
    every image made of ``channels`` of its split's images ([N, channels, 28, 28]),
    labelled by their digits read as one number."""
    rng = np.random.default_rng(STACK_SEED)
    out: list[np.ndarray] = []
    for images, labels in zip(splits[::2], splits[1::2], strict=True):
        perms = [rng.permutation(len(labels)) for _ in range(channels)]
        out.append(np.stack([images[p] for p in perms], axis=1))
        out.append(sum(labels[p].astype(np.int64) * 10 ** (channels - 1 - c)
                       for c, p in enumerate(perms)))  # fmt: skip
    return tuple(out)
