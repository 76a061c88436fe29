"""The small CNN's architecture as data, and what it costs (torch-free).

Each conv block is conv k×k (same padding) -> [norm if "before"] -> activation ->
[norm if "after"] -> 2×2 max-pool; then the pooled maps are flattened and the dense
hidden blocks (as in the MLP, dropout included) lead to the classes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from normlab.models.mlp.spec import dense_parameters
from normlab.models.settings import BlockSpec


@dataclass(frozen=True)
class CNNSpec(BlockSpec):
    """Architecture of every member of a stack: ``image`` is channels × height × width;
    conv blocks of ``channels`` with ``kernel``×``kernel`` kernels, then dense hidden
    blocks of ``hidden`` (``BlockSpec`` for both) and the classes."""

    image: tuple[int, int, int]
    channels: tuple[int, ...]
    hidden: tuple[int, ...]
    n_classes: int
    kernel: int = 3

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.channels or min(self.channels) < 1:
            raise ValueError(f"channels must be positive, got {list(self.channels)}")
        if min(self.maps[-1][1:]) < 1:
            raise ValueError(
                f"{len(self.channels)} 2×2 poolings leave nothing of a "
                f"{self.image[1]}×{self.image[2]} image"
            )

    @property
    def maps(self) -> list[tuple[int, int, int]]:
        """Each block's output after pooling (channels, height, width), the input first."""
        shapes = [self.image]
        for c in self.channels:
            _, h, w = shapes[-1]
            shapes.append((c, h // 2, w // 2))
        return shapes

    @property
    def flat(self) -> int:
        """Values per example entering the dense layers."""
        return math.prod(self.maps[-1])

    @property
    def dense_widths(self) -> tuple[int, ...]:
        return (self.flat, *self.hidden, self.n_classes)

    @property
    def conv_parameters(self) -> int:
        ins = [self.image[0], *self.channels]
        return sum(o * i * self.kernel**2 + o for i, o in zip(ins, self.channels, strict=False))

    @property
    def parameters(self) -> int:
        """Parameters of one member."""
        return self.conv_parameters + dense_parameters(self.dense_widths)

    def conv_flops(self) -> int:
        """Multiply-adds ×2 of one example's convolutions (every position of every block)."""
        flops = 0
        for (c_in, h, w), c_out in zip(self.maps, self.channels, strict=False):
            flops += 2 * c_out * c_in * self.kernel**2 * h * w
        return flops
