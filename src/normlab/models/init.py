"""Weight initialization schemes, drawn per member from that member's own generator.

Each layer of each member is drawn from a generator seeded by (run seed, layer index)
alone, so a member's initial weights do not depend on which stack it sits in, and two
runs that differ only in normalization start from the same weights. Fans follow Keras:
a dense layer's are its input and output widths, a convolution's are C_in·k·k and
C_out·k·k.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from normlab.models.registry import INIT_SCHEMES


def init_layer(
    scheme: str,
    shape: Sequence[int],
    fans: tuple[int, int],
    bias_size: int,
    scale: float,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight of ``shape`` and bias [bias_size] for one member's layer with ``fans``
    (fan_in, fan_out).

    ``scale`` multiplies the weights (not the bias). Bias is zero except for
    ``torch_default``, which draws it from U(±1/sqrt(fan_in)) as ``nn.Linear`` and
    ``nn.Conv2d`` do.
    """
    fan_in, fan_out = fans
    shape = tuple(shape)

    def uniform(bound: float) -> torch.Tensor:
        return (torch.rand(shape, generator=generator) * 2 - 1) * bound

    def normal(std: float) -> torch.Tensor:
        return torch.randn(shape, generator=generator) * std

    bias = torch.zeros(bias_size)
    if scheme == "glorot_uniform":
        weight = uniform(math.sqrt(6.0 / (fan_in + fan_out)))
    elif scheme == "glorot_normal":
        weight = normal(math.sqrt(2.0 / (fan_in + fan_out)))
    elif scheme == "he_uniform":
        weight = uniform(math.sqrt(6.0 / fan_in))
    elif scheme == "he_normal":
        weight = normal(math.sqrt(2.0 / fan_in))
    elif scheme == "lecun_normal":
        weight = normal(math.sqrt(1.0 / fan_in))
    elif scheme == "torch_default":
        bound = 1.0 / math.sqrt(fan_in)
        weight = uniform(bound)
        bias = (torch.rand(bias_size, generator=generator) * 2 - 1) * bound
    else:
        raise ValueError(f"unknown init scheme {scheme!r}: choose one of {', '.join(INIT_SCHEMES)}")
    return weight * scale, bias
