"""What models are made of, each kind registered once with what callers may ask of it.

Torch-free: the run configuration derives its valid names from here, and every caller
that needs to know whether a norm uses batch statistics, keeps running statistics or
folds into the layer before it asks the norm's entry, never its class.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from normlab.registry import Registry


class NormedRun(Protocol):
    """What a norm's constraints read of a run (``RunConfig`` has it)."""

    norm: str
    norm_affine: bool
    norm_gain: float
    batch_size: int
    groups: int
    ghost_batch_size: int


@dataclass(frozen=True)
class NormKind:
    """A normalization layer, its capabilities and its constraints.

    ``batch_statistics``: training normalizes by statistics of the batch, so a batch
    needs at least 2 examples and members see their own batch only. ``running_statistics``:
    keeps running averages of them that inference uses (the ``bn`` probe's discrepancy,
    precise BN, variance shift). ``foldable``: at inference it is a per-unit affine map,
    so it folds into the dense or convolutional layer right before it. ``noisy``: in
    training it perturbs its output with random noise drawn from the step's keys (one
    key per norm layer, after the dropout layers'), so only classifiers take it.
    ``check``: what else a run must satisfy, given its layers' widths (None: nothing).
    """

    name: str
    layer: str | None  # "module:Class" of its stacked layer; None: no normalization
    batch_statistics: bool = False
    running_statistics: bool = False
    foldable: bool = False
    reference_batch: bool = False  # normalizes by a reference batch its network feeds along
    noisy: bool = False
    check: Callable[[NormedRun, tuple[int, ...]], str | None] | None = None

    def problem(self, run: NormedRun, units: tuple[int, ...], generative: bool) -> str | None:
        """What is wrong with ``run`` (a network of layers ``units`` wide, a generator's
        if ``generative``) for this norm, if anything."""
        if self.reference_batch and not generative:
            return (f"norm {self.name!r} needs a reference batch fed through the network, "
                    "which only the GAN family's generator does")  # fmt: skip
        if self.noisy and generative:
            return f"norm {self.name!r} injects noise into classifiers only, not a GAN"
        if self.layer is None and (not run.norm_affine or run.norm_gain != 1.0):
            return "norm_affine and norm_gain need a norm; norm 'none' has no γ, β"
        if self.batch_statistics and run.batch_size < 2:
            return f"norm {self.name!r} needs batch_size >= 2, got {run.batch_size}"
        return self.check(run, units) if self.check else None


def _groups_divide(run: NormedRun, units: tuple[int, ...]) -> str | None:
    if any(u % run.groups for u in units):
        return f"groups {run.groups} must divide every layer's width {units}"
    return None


def _ghosts_divide(run: NormedRun, units: tuple[int, ...]) -> str | None:
    if run.batch_size > run.ghost_batch_size and run.batch_size % run.ghost_batch_size:
        return f"ghost_batch_size {run.ghost_batch_size} must divide batch_size {run.batch_size}"
    return None


# Folding a foldable norm keeps a network's outputs to float rounding: at most this
# largest |Δ logit| relative to the largest logit (``normlab fold``, claim 7).
FOLD_TOLERANCE = 1e-5

NORMS: Registry[NormKind] = Registry("norm")
for _kind in (
    NormKind("none", None),
    NormKind("batch", "normlab.models.norms:BatchNorm", True, True, True),
    NormKind("layer", "normlab.models.norms:LayerNorm"),
    NormKind("group", "normlab.models.norms:GroupNorm", check=_groups_divide),
    NormKind("rms", "normlab.models.norms:RMSNorm"),
    NormKind("batch_renorm", "normlab.models.norms:BatchRenorm", True, True, True),
    NormKind("ghost_batch", "normlab.models.norms:GhostBatchNorm", True, True, True,
             check=_ghosts_divide),
    NormKind("noisy_batch", "normlab.models.noisy:NoisyBatchNorm", True, True, True, noisy=True),
    NormKind("virtual_batch", "normlab.models.gan.vbn:VirtualBatchNorm", reference_batch=True),
):
    NORMS.register(_kind.name, _kind)


@dataclass(frozen=True)
class Activation:
    """An activation function and its output range: ``bounds`` for a saturating one (the
    ``activations`` probe counts values within 0.01 of a bound), None for ReLU (it
    counts dead units instead)."""

    name: str
    function: str  # "module:function"
    bounds: tuple[float, float] | None


ACTIVATIONS: Registry[Activation] = Registry("activation")
for _act in (
    Activation("relu", "torch:relu", None),
    Activation("tanh", "torch:tanh", (-1.0, 1.0)),
    Activation("sigmoid", "torch:sigmoid", (0.0, 1.0)),
    Activation("leaky_relu", "normlab.models.blocks:leaky_relu", None),
):
    ACTIVATIONS.register(_act.name, _act)

INIT_SCHEMES: tuple[str, ...] = (
    "glorot_uniform",
    "glorot_normal",
    "he_uniform",
    "he_normal",
    "lecun_normal",
    "torch_default",
)
POSITIONS: tuple[str, ...] = ("before", "after")

# Model families: "module:attribute" of each family's ``ModelFamily`` object, which is
# torch-free and builds its stacked module on demand (``normlab.models.family``).
FAMILIES: Registry[str] = Registry("model")
FAMILIES.register("mlp", "normlab.models.mlp:FAMILY")
FAMILIES.register("cnn", "normlab.models.cnn:FAMILY")
FAMILIES.register("gan", "normlab.models.gan:FAMILY")
