"""The seed's model family: a multilayer perceptron (``spec``, ``stack``), registered
as ``mlp``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType

from normlab.models.family import EVAL_CHUNK, DataShape, ModelSettings, widths
from normlab.models.mlp.settings import MLPSettings
from normlab.models.mlp.spec import MLPSpec
from normlab.models.settings import BlockSpec


class MLPFamily:
    """Dense hidden layers (``hidden``) between the flattened image and the classes."""

    name = "mlp"
    generative = False
    instruments = ()
    settings = MLPSettings
    defaults: Mapping[str, object] = MappingProxyType({})
    # Stacking pays while a CPU stack holds about this many parameters (the cost curves
    # in BENCHMARKS.md: with 100k parameters per member stacking pays up to K=16-32,
    # with 400k it levels off at K=4-8, with 1.6M one member alone is fastest: past
    # ~3M the stacked weights and Adam state leave the cache and the bigger matmuls
    # gain nothing). On a GPU it paid up to K=32 at every width: no cap there.
    cpu_stack_parameters = 3_000_000

    def check(self, settings: ModelSettings) -> str | None:
        if not settings.hidden:
            return "hidden: an MLP needs at least one hidden layer"
        if any(w < 1 for w in settings.hidden):
            return f"hidden widths must be positive, got {list(settings.hidden)}"
        return None

    def units(self, settings: ModelSettings) -> tuple[int, ...]:
        """Widths of the layers a norm follows (what ``groups`` must divide)."""
        return tuple(settings.hidden)

    def spec(self, settings: ModelSettings, data: DataShape) -> MLPSpec:
        return MLPSpec(
            n_inputs=data.n_features,
            hidden=tuple(settings.hidden),
            n_classes=data.classes,
            **BlockSpec.options(settings),
        )

    def build(self, spec: MLPSpec, seeds: Sequence[int]):
        from normlab.models.mlp.stack import StackedMLP

        return StackedMLP(spec, seeds)

    def member_parameters(self, spec: MLPSpec) -> int:
        return spec.parameters

    def member_bytes(self, spec: MLPSpec, batch_size: int) -> int:
        """Memory one member needs while training: weights, gradients and Adam's two
        moments (4 float32 copies of the parameters), the step's activations (input
        batch; per hidden layer pre-activation, output and gradients) and the
        evaluation chunk's activations."""
        activations = batch_size * (spec.n_inputs + 4 * sum(spec.hidden) + 3 * spec.n_classes)
        evaluation = EVAL_CHUNK * (sum(spec.hidden) + spec.n_classes)
        return 4 * (4 * spec.parameters + activations + evaluation)

    def forward_flops(self, spec: MLPSpec) -> int:
        """Floating-point operations of one example's forward pass (a multiply-add per
        weight, two per parameter counting the biases as the estimate always has)."""
        return 2 * spec.parameters

    def describe(self, settings: ModelSettings) -> str:
        return f"MLP {widths(settings.hidden)}"


FAMILY = MLPFamily()
