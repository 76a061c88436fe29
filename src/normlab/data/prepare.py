"""Preprocessing and splits: raw arrays to float tensors resident on the run's device.

No DataLoader: the whole dataset lives in memory as tensors, and training gathers each
step's batch by index.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from normlab.data.locate import RawDataset

Inputs = Literal["raw", "scaled", "standardized", "symmetric"]
INPUTS: tuple[str, ...] = ("raw", "scaled", "standardized", "symmetric")


@dataclass(frozen=True)
class Split:
    """Flattened float32 images [N, D] and int64 labels [N]."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)


@dataclass(frozen=True)
class Splits:
    """Train, validation and test splits of one dataset under one preprocessing."""

    train: Split
    val: Split
    test: Split
    inputs: str
    n_classes: int

    @property
    def n_features(self) -> int:
        return self.train.x.shape[1]


def validation_indices(n: int, val_size: int, data_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val) of a random hold-out of ``val_size`` examples, fixed by the seed."""
    if not 0 <= val_size < n:
        raise ValueError(f"val_size must be in [0, {n}), got {val_size}")
    order = np.random.default_rng(data_seed).permutation(n)
    return np.sort(order[val_size:]), np.sort(order[:val_size])


def prepare(
    raw: RawDataset,
    inputs: str = "raw",
    *,
    val_size: int = 5000,
    data_seed: int = 0,
    device: torch.device | str = "cpu",
) -> Splits:
    """Hold out a validation split, flatten, scale the pixels and move everything to ``device``.

    ``raw`` keeps 0-255 as the seed notebook does; ``scaled`` divides by 255;
    ``symmetric`` maps them to [-1, 1] (what a GAN generator's tanh draws);
    ``standardized`` subtracts the training split's mean pixel value and divides by its
    standard deviation (one scalar each: per-pixel statistics are zero-variance at the
    border of MNIST).
    """
    if inputs not in INPUTS:
        raise ValueError(f"inputs must be one of {', '.join(INPUTS)}, got {inputs!r}")
    train_idx, val_idx = validation_indices(len(raw.y_train), val_size, data_seed)
    # Split the bytes, then convert: the copies move a quarter of the float32 data.
    pixels = raw.x_train.reshape(len(raw.x_train), -1)
    x_train, x_val = (pixels[idx].astype(np.float32) for idx in (train_idx, val_idx))
    x_test = raw.x_test.reshape(len(raw.x_test), -1).astype(np.float32)
    if inputs == "scaled":
        x_train, x_val, x_test = (a / np.float32(255.0) for a in (x_train, x_val, x_test))
    elif inputs == "symmetric":
        x_train, x_val, x_test = (a / np.float32(127.5) - 1 for a in (x_train, x_val, x_test))
    elif inputs == "standardized":
        mean = np.float32(x_train.mean(dtype=np.float64))
        std = np.float32(x_train.std(dtype=np.float64))
        x_train, x_val, x_test = ((a - mean) / std for a in (x_train, x_val, x_test))

    def split(x: np.ndarray, y: np.ndarray) -> Split:
        return Split(
            x=torch.from_numpy(np.ascontiguousarray(x)).to(device),
            y=torch.from_numpy(y.astype(np.int64)).to(device),
        )

    return Splits(
        train=split(x_train, raw.y_train[train_idx]),
        val=split(x_val, raw.y_train[val_idx]),
        test=split(x_test, raw.y_test),
        inputs=inputs,
        n_classes=int(max(raw.y_train.max(), raw.y_test.max())) + 1,
    )
