"""A small convolutional family (``spec``, ``stack``), registered as ``cnn``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType

from normlab.models.cnn.settings import CNNSettings
from normlab.models.cnn.spec import CNNSpec
from normlab.models.family import DataShape, ModelSettings, widths
from normlab.models.settings import BlockSpec


class CNNFamily:
    """Conv blocks (``channels``, ``kernel``), then dense hidden layers (``hidden``, may
    be empty) to the classes."""

    name = "cnn"
    generative = False
    instruments = ()
    settings = CNNSettings
    defaults: Mapping[str, object] = MappingProxyType({})
    # On the CPU measured (BENCHMARKS.md, issue 10) a stack of the default CNN (421k
    # parameters per member) trained fastest per model at K=4, at batch 32 and 256 alike:
    # 1.4× faster than K=1, and 5-10% faster than K=8, whose maps leave the caches.
    cpu_stack_parameters = 1_700_000

    def check(self, settings: ModelSettings) -> str | None:
        if not settings.arch.channels or min(settings.arch.channels) < 1:
            return f"channels must be positive, got {list(settings.arch.channels)}"
        if settings.hidden and min(settings.hidden) < 1:
            return f"hidden widths must be positive, got {list(settings.hidden)}"
        return None

    def units(self, settings: ModelSettings) -> tuple[int, ...]:
        """Channels of each conv block, then the dense hidden widths: what a norm follows."""
        return (*settings.arch.channels, *settings.hidden)

    def spec(self, settings: ModelSettings, data: DataShape) -> CNNSpec:
        return CNNSpec(
            image=data.image_shape,
            channels=tuple(settings.arch.channels),
            hidden=tuple(settings.hidden),
            n_classes=data.classes,
            kernel=settings.arch.kernel,
            **BlockSpec.options(settings),
        )

    def build(self, spec: CNNSpec, seeds: Sequence[int]):
        from normlab.models.cnn.stack import StackedCNN

        return StackedCNN(spec, seeds)

    def member_parameters(self, spec: CNNSpec) -> int:
        return spec.parameters

    def member_bytes(self, spec: CNNSpec, batch_size: int) -> int:
        """Memory one member needs while training: 4 float32 copies of the parameters,
        and per example about 6 values per conv output (input, output, normalized,
        activated, pooled, and their gradients) plus the dense layers' as in the MLP;
        evaluation chunks are ``EVAL_ROWS`` examples."""
        conv = sum(c * h * w * 4 for c, h, w in spec.maps[1:])  # before pooling: 4× the pooled
        dense = spec.flat + 4 * sum(spec.hidden) + 3 * spec.n_classes
        per_example = 6 * conv + dense
        return 4 * (4 * spec.parameters + per_example * max(batch_size, EVAL_ROWS))

    def forward_flops(self, spec: CNNSpec) -> int:
        return spec.conv_flops() + 2 * (spec.parameters - spec.conv_parameters)

    def describe(self, settings: ModelSettings) -> str:
        conv = "-".join(map(str, settings.arch.channels))
        return f"CNN {conv} + {widths(settings.hidden)}" if settings.hidden else f"CNN {conv}"


EVAL_ROWS = 250  # examples per evaluation pass: conv maps are large (StackedCNN.eval_chunk)
FAMILY = CNNFamily()
