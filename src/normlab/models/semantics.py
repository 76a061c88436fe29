"""Named numeric conventions of the two frameworks users come from.

Users confuse these constantly, so normlab names them and stores the resolved values
with every run.

Momentum conventions. Both frameworks keep a running mean ``r`` of a batch statistic
``s``, but name the mixing weight differently:

    Keras:   r <- momentum_keras * r + (1 - momentum_keras) * s      (default 0.99)
    PyTorch: r <- (1 - momentum_torch) * r + momentum_torch * s      (default 0.1)

so ``momentum_torch = 1 - momentum_keras``: Keras's 0.99 is PyTorch's 0.01, and
PyTorch's 0.1 is Keras's 0.9. normlab stores the PyTorch-convention value
(``bn_momentum``, the weight on the *new* statistic) for both presets.

Other differences the presets capture:
- BN epsilon: Keras 1e-3, PyTorch 1e-5.
- Running variance: Keras updates it with the biased batch variance, PyTorch with the
  unbiased (Bessel-corrected) one. Both normalize the batch with the biased variance.
- Adam epsilon: Keras 1e-7 added to ``sqrt(v)`` *before* bias correction (the paper's
  "epsilon hat"); PyTorch 1e-8 added after it.
- Dense init: Keras glorot-uniform weights and zero bias; PyTorch U(±1/sqrt(fan_in))
  for both weights and bias.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

SemanticsName = Literal["keras", "torch"]


@dataclass(frozen=True)
class Semantics:
    """Resolved numeric conventions of one preset."""

    name: str
    init: str
    bn_momentum: float  # PyTorch convention: weight of the new batch statistic
    bn_eps: float
    bn_unbiased_running_var: bool
    adam_eps: float
    adam_eps_before_bias_correction: bool


def keras_to_torch_momentum(momentum_keras: float) -> float:
    """Convert a Keras BN momentum (weight of the old value) to PyTorch's convention."""
    return 1.0 - momentum_keras


KERAS = Semantics(
    name="keras",
    init="glorot_uniform",
    bn_momentum=keras_to_torch_momentum(0.99),
    bn_eps=1e-3,
    bn_unbiased_running_var=False,
    adam_eps=1e-7,
    adam_eps_before_bias_correction=True,
)

TORCH = Semantics(
    name="torch",
    init="torch_default",
    bn_momentum=0.1,
    bn_eps=1e-5,
    bn_unbiased_running_var=True,
    adam_eps=1e-8,
    adam_eps_before_bias_correction=False,
)

PRESETS: dict[str, Semantics] = {"keras": KERAS, "torch": TORCH}


def get_semantics(name: str) -> Semantics:
    """The preset called ``name``, or a ValueError listing the known ones."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown semantics {name!r}: choose keras or torch") from None
