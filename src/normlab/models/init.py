"""Weight initialization schemes, drawn per member from that member's own generator.

Each layer of each member is drawn from a generator seeded by (run seed, layer index)
alone, so a member's initial weights do not depend on which stack it sits in, and two
runs that differ only in normalization start from the same linear weights.
"""

from __future__ import annotations

import math

import torch

INIT_SCHEMES: tuple[str, ...] = (
    "glorot_uniform",
    "glorot_normal",
    "he_uniform",
    "he_normal",
    "lecun_normal",
    "torch_default",
)


def init_linear(
    scheme: str, fan_in: int, fan_out: int, scale: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight [fan_in, fan_out] and bias [fan_out] for one member's dense layer.

    ``scale`` multiplies the weights (not the bias). Bias is zero except for
    ``torch_default``, which draws it from U(±1/sqrt(fan_in)) as ``nn.Linear`` does.
    """
    shape = (fan_in, fan_out)

    def uniform(bound: float) -> torch.Tensor:
        return (torch.rand(shape, generator=generator) * 2 - 1) * bound

    def normal(std: float) -> torch.Tensor:
        return torch.randn(shape, generator=generator) * std

    bias = torch.zeros(fan_out)
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
        bias = (torch.rand(fan_out, generator=generator) * 2 - 1) * bound
    else:
        raise ValueError(f"unknown init scheme {scheme!r}: choose one of {', '.join(INIT_SCHEMES)}")
    return weight * scale, bias
