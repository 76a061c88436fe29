"""The model-family seam: what the planner, the runner and the claims ask of a family.

A family is one folder (``models/mlp``, ``models/cnn``) whose ``FAMILY`` object is
torch-free and registered in ``models.registry.FAMILIES``; its stacked module is built
on demand. Adding a family needs no edit of the loop, the store or the command line.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from pydantic import BaseModel

from normlab.models.registry import FAMILIES
from normlab.models.settings import NormSettings
from normlab.registry import load

EVAL_CHUNK = 1000  # rows per evaluation pass: the evaluation loop and the cost models


class ModelSettings(Protocol):
    """The run settings a family reads (``spec.config.RunConfig`` has them): the shared
    ones, and ``arch``, the family's own section (its ``settings`` model)."""

    arch: Any
    hidden: tuple[int, ...]
    inputs: str
    probes: tuple[str, ...]
    batch_size: int
    activation: str
    norm: str
    norm_position: str
    dropout: float
    dropout_position: str
    init: str
    init_scale: float

    def norm_settings(self) -> NormSettings: ...


class DataShape(Protocol):
    """The dataset facts a family reads (``data.sources.DatasetSource`` has them)."""

    image_shape: tuple[int, int, int]
    classes: int

    @property
    def n_features(self) -> int: ...


class ModelFamily(Protocol):
    """One model family: checks, spec, stacked module and cost model."""

    name: str
    cpu_stack_parameters: int  # stacking pays on a CPU up to about this many parameters
    generative: bool  # it draws images (judged by the reference classifier), not labels
    instruments: tuple[str, ...]  # probes every run of the family records, unlisted
    settings: type[BaseModel]  # its section of a run's configuration, tagged by ``model``
    defaults: Mapping[str, object]  # run settings' defaults of this family's own

    def check(self, settings: ModelSettings) -> str | None:
        """What is wrong with ``settings`` for this family (None: nothing)."""

    def units(self, settings: ModelSettings) -> tuple[int, ...]:
        """Units (features or channels) of each layer a norm follows."""

    def spec(self, settings: ModelSettings, data: DataShape) -> Any:
        """The architecture ``settings`` ask for on ``data``."""

    def build(self, spec: Any, seeds: Sequence[int]) -> Any:
        """A ``models.stack.StackedModel`` of ``spec``, member k initialised from seeds[k]."""

    def member_parameters(self, spec: Any) -> int: ...

    def member_bytes(self, spec: Any, batch_size: int) -> int:
        """Memory one member needs while training at ``batch_size``."""

    def forward_flops(self, spec: Any) -> int:
        """Floating-point operations of one example's forward pass."""

    def describe(self, settings: ModelSettings) -> str:
        """The architecture in a few characters, e.g. "MLP 1×512"."""


def widths(layers: Sequence[int]) -> str:
    """Layer widths as people write them: "3×100" when uniform, else "512-256"."""
    if layers and len(set(layers)) == 1:
        return f"{len(layers)}×{layers[0]}"
    return "-".join(map(str, layers)) or "0"


def get_family(name: str) -> ModelFamily:
    """The family registered as ``name``; a ValueError lists the known ones."""
    return load(FAMILIES[name])
