"""The MLP's architecture as data, and what it costs (torch-free)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from normlab.models.registry import ACTIVATIONS, NORMS, POSITIONS
from normlab.models.settings import NormSettings


@dataclass(frozen=True)
class MLPSpec:
    """Architecture of every member of a stack.

    A hidden block is Dense -> [norm if "before"] -> activation -> [norm if "after"]
    -> dropout; the output layer is Dense to ``n_classes`` logits (the softmax lives in
    the loss). ``dropout_position="before"`` moves the dropout to right after the
    Dense, so that it feeds the norm directly (Li et al. 2019's "dropout before BN").
    """

    n_inputs: int
    hidden: tuple[int, ...]
    n_classes: int
    activation: str = "relu"
    norm: str = "none"
    norm_position: str = "before"
    dropout: float = 0.0
    dropout_position: str = "after"
    init: str = "glorot_uniform"
    init_scale: float = 1.0
    norm_settings: NormSettings = field(default_factory=NormSettings)

    def __post_init__(self) -> None:
        check_block(self)

    @property
    def widths(self) -> tuple[int, ...]:
        return (self.n_inputs, *self.hidden, self.n_classes)

    @property
    def parameters(self) -> int:
        """Parameters of one member."""
        return dense_parameters(self.widths)


def check_block(spec) -> None:
    """Reject an activation, norm, position or dropout that no block can build."""
    ACTIVATIONS[spec.activation]
    NORMS[spec.norm]
    if spec.norm_position not in POSITIONS:
        raise ValueError(f"norm_position must be before or after, got {spec.norm_position!r}")
    if spec.dropout_position not in POSITIONS:
        raise ValueError(f"dropout_position must be before or after, got {spec.dropout_position!r}")
    if not 0.0 <= spec.dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {spec.dropout}")


def dense_parameters(widths: tuple[int, ...]) -> int:
    """Weights and biases of dense layers between consecutive ``widths``."""
    return sum(a * b + b for a, b in itertools.pairwise(widths))
