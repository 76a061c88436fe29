"""The MLP's architecture as data, and what it costs (torch-free)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from normlab.models.settings import BlockSpec


@dataclass(frozen=True)
class MLPSpec(BlockSpec):
    """Architecture of every member of a stack: dense hidden blocks (``BlockSpec``) of
    widths ``hidden`` between ``n_inputs`` and the ``n_classes`` logits (the softmax
    lives in the loss)."""

    n_inputs: int
    hidden: tuple[int, ...]
    n_classes: int

    @property
    def widths(self) -> tuple[int, ...]:
        return (self.n_inputs, *self.hidden, self.n_classes)

    @property
    def parameters(self) -> int:
        """Parameters of one member."""
        return dense_parameters(self.widths)


def dense_parameters(widths: tuple[int, ...]) -> int:
    """Weights and biases of dense layers between consecutive ``widths``."""
    return sum(a * b + b for a, b in itertools.pairwise(widths))
