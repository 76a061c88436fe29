"""One run's full configuration: everything its numbers depend on besides the machine.

The settings every run has are fields here; a model family's own (a CNN's conv blocks,
a GAN's discriminator) are its section, ``arch``, declared and validated in the
family's folder (``models/<family>/settings.py``) and told apart by ``model``. Read
and written, a configuration is flat (``config.channels``, ``{"model": "cnn",
"channels": [8, 16], ...}``): study files, stored runs and exports name every setting
alike, and a setting of another family is refused unless it is that family's default.

A run is identified by the SHA-256 of its canonical JSON, so the same configuration in
two studies is one run, trained once. Torch-free: the store's readers parse stored
configurations back through this model (``RunConfig.from_stored``), so a run recorded
before a field existed reads with that field's default.
"""

from __future__ import annotations

import hashlib
import json
from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from normlab.data.sources import DATASETS, DatasetSource
from normlab.models.family import ModelFamily, get_family
from normlab.models.registry import ACTIVATIONS, FAMILIES, INIT_SCHEMES, NORMS, POSITIONS
from normlab.models.semantics import PRESETS, get_semantics
from normlab.models.settings import NormSettings
from normlab.spec.probes import PROBES

# The valid names of each registered kind, as the types of the fields that take them.
Dataset = Literal[DATASETS.names()]  # type: ignore[valid-type]
# Each registered family's section, told apart by its ``model``.
_SECTIONS = {name: get_family(name).settings for name in FAMILIES.names()}
Architecture = Annotated[
    Union[tuple(_SECTIONS.values())],  # type: ignore[valid-type]  # noqa: UP007
    Field(discriminator="model"),
]
Norm = Literal[NORMS.names()]  # type: ignore[valid-type]
ActivationName = Literal[ACTIVATIONS.names()]  # type: ignore[valid-type]
InitScheme = Literal[INIT_SCHEMES]  # type: ignore[valid-type]
Position = Literal[POSITIONS]  # type: ignore[valid-type]
SemanticsName = Literal[tuple(PRESETS)]  # type: ignore[valid-type]

DEFAULT_LR = 1e-3  # Adam's and Keras's default rate, the seed notebook's
# Fields that may differ between the members of one stack.
MEMBER_FIELDS = ("seed", "lr")
# Fields only normlab's own procedures set (one model carried through several
# trainings, as the notebook does); a study file may not.
INTERNAL_FIELDS = ("carried_from", "stream")
# Fields added after the first release, left out of a run's identity while at their
# default, so that runs recorded before them keep their ids.
_LATER_FIELDS = {
    "probes": [],
    "probe_every": 100,
    "eval_every": 0,
    "dropout_position": "after",
    "model": "mlp",
    "channels": [32, 64],
    "kernel": 3,
    "norm_affine": True,
    "norm_gain": 1.0,
    "latent": 64,
    "discriminator_hidden": [512, 256],
    "discriminator_norm": "none",
    "discriminator_batch": "separate",
    "gan_samples": 10000,
    "beta1": 0.9,
    "patience": 0,
    "evaluation": "running",
    "bn_momentum": None,
    "bn_eps": None,
    "eval_per_epoch": 0,
}


class RunConfig(BaseModel):
    """One training run. Defaults are the seed notebook's setup."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dataset: Dataset = "mnist"
    inputs: Literal["raw", "scaled", "standardized", "symmetric"] = "raw"
    val_size: int = Field(5000, ge=0, le=50000)
    data_seed: int = Field(0, ge=0)
    arch: Architecture = Field(
        default_factory=_SECTIONS["mlp"],
        description="the model family's own settings: model = mlp, cnn (conv blocks "
        "first) or gan (claim 13), and that family's fields",
    )
    hidden: tuple[int, ...] = Field(
        (512,), description="dense hidden layers' widths (gan: the generator's)"
    )
    activation: ActivationName = "relu"
    norm: Norm = Field("none", description="the hidden layers' norm (gan: the generator's)")
    norm_position: Position = "before"
    norm_affine: bool = Field(
        True, description="learn the norm's gain γ and shift β (false: frozen at their start)"
    )
    norm_gain: float = Field(1.0, gt=0.0, description="the norm's initial gain γ")
    dropout: float = Field(0.2, ge=0.0, lt=1.0, description="after each dense hidden layer")
    dropout_position: Position = Field(
        "after",
        description="after: at the hidden block's end (the seed's); before: right after "
        "the dense layer, feeding the norm",
    )
    semantics: SemanticsName = "keras"
    init: InitScheme | None = Field(None, description="default: the semantics preset's")
    init_scale: float = Field(1.0, gt=0.0)
    bn_momentum: float | None = Field(
        None,
        gt=0.0,
        lt=1.0,
        description="BN's running-average momentum as Keras counts it, the old average's "
        "weight (Keras 0.99, PyTorch's 0.1 is 0.9); default: the semantics preset's",
    )
    bn_eps: float | None = Field(
        None, gt=0.0, description="BN's ε; default: the semantics preset's"
    )
    groups: int = Field(32, ge=1)
    ghost_batch_size: int = Field(32, ge=2)
    optimizer: Literal["adam", "sgd"] = "adam"
    lr: float = Field(DEFAULT_LR, gt=0.0)
    beta1: float = Field(0.9, ge=0.0, lt=1.0, description="Adam only: the first moment's decay")
    momentum: float = Field(0.9, ge=0.0, lt=1.0, description="SGD only")
    nesterov: bool = False
    batch_size: int = Field(32, ge=1)
    epochs: int = Field(5, ge=1)
    seed: int = Field(0, ge=0)
    log_every: int = Field(1, ge=1, description="keep every n-th step's training loss")
    probes: tuple[str, ...] = Field(
        (), description="instruments to record (normlab.probes); none cost nothing"
    )
    probe_every: int = Field(100, ge=1, description="steps between probe measurements")
    eval_every: int = Field(
        0, ge=0, description="steps between validation evaluations (0: each epoch's end only)"
    )
    eval_per_epoch: int = Field(
        0,
        ge=0,
        description="validation evaluations per epoch, evenly spaced in its steps, in place "
        "of eval_every (so that runs of different batch sizes are resolved alike in epochs)",
    )
    patience: int = Field(
        0,
        ge=0,
        description="stop once validation accuracy has not improved for this many epochs "
        "(epochs is then the cap) and report the epoch of the best validation accuracy; "
        "0: train every epoch and report the last",
    )
    evaluation: Literal["running", "precise"] = Field(
        "running",
        description="the BN statistics validation and test are evaluated with: the running "
        "averages (as Keras and PyTorch do), or precise ones, recomputed for the weights at "
        "hand from training batches (the running figures are then kept beside them)",
    )
    # Set only by procedures that carry one model through several trainings (the
    # notebook as written): the run whose final weights this one starts from, and
    # which random streams it draws data order and dropout from.
    carried_from: str | None = None
    stream: int = Field(0, ge=0)

    @classmethod
    def from_stored(cls, config_json: str) -> RunConfig:
        """A stored configuration, with today's defaults for fields it predates."""
        return cls.model_validate_json(config_json)

    @classmethod
    def as_stored_row(cls, config_json: str) -> dict[str, object]:
        """A stored configuration as plain values, every field of its family present (for
        exports)."""
        return cls.from_stored(config_json).model_dump(mode="json")

    @field_validator("probes")
    @classmethod
    def _known_probes(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        for name in names:
            PROBES[name]  # a ValueError lists the registered instruments
        return names

    @model_validator(mode="before")
    @classmethod
    def _resolve(cls, data: object) -> object:
        if not isinstance(data, dict):
            return data
        model = data.get("model", "mlp")
        if model in _SECTIONS:  # an unknown one is reported by the section's tag
            # A family may have defaults of its own (a GAN's optimizer, inputs, ...).
            data = {**get_family(model).defaults, **data}
        if data.get("init") is None:
            semantics = data.get("semantics", "keras")
            if semantics in PRESETS:  # an unknown one is reported by its own field
                data = {**data, "init": get_semantics(semantics).init}
        return _sectioned(data, model)

    @model_serializer(mode="wrap")
    def _flat(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """The configuration as one flat mapping: the family's section in its place."""
        out: dict[str, Any] = {}
        for key, value in handler(self).items():
            if key == "arch":
                out.update(value)
            else:
                out[key] = value
        return out

    def __getattr__(self, name: str) -> Any:
        # A family's own setting reads like any other: config.channels.
        arch = self.__dict__.get("arch")
        if arch is not None and name in type(arch).model_fields:
            return getattr(arch, name)
        return super().__getattr__(name)

    @classmethod
    def field_names(cls) -> list[str]:
        """Every setting a run may have, as study files name them (flat)."""
        names = []
        for name in cls.model_fields:
            if name != "arch":
                names.append(name)
                continue
            for section in _SECTIONS.values():
                names += [f for f in section.model_fields if f not in names]
        return names

    @model_validator(mode="after")
    def _check_combination(self) -> RunConfig:
        problem = self.family.check(self)
        if problem:
            raise ValueError(problem)
        problem = NORMS[self.norm].problem(self, self.family.units(self), self.family.generative)
        if problem:
            raise ValueError(problem)
        if self.eval_every and self.eval_per_epoch:
            raise ValueError("give eval_every or eval_per_epoch, not both")
        if self.patience and (self.val_size == 0 or self.family.generative):
            raise ValueError("patience stops at a validation plateau: it needs a classifier "
                             "with val_size > 0")
        if self.nesterov and (self.optimizer != "sgd" or self.momentum == 0):
            raise ValueError("nesterov needs optimizer 'sgd' with momentum > 0")
        for name in self.probes:
            problem = PROBES[name].problem(self)
            if problem:
                raise ValueError(problem)
        return self

    @property
    def family(self) -> ModelFamily:
        """The model family this run trains."""
        return get_family(self.model)

    @property
    def source(self) -> DatasetSource:
        """The dataset this run trains on, with its facts."""
        return DATASETS[self.dataset]

    def model_spec(self) -> object:
        """The architecture this run asks for, on its dataset."""
        return self.family.spec(self, self.source)

    @property
    def steps_per_epoch(self) -> int:
        """Optimizer steps in one epoch (the last partial batch is dropped)."""
        return (self.source.train_size - self.val_size) // self.batch_size

    @property
    def eval_interval(self) -> int:
        """Steps between validation evaluations within epochs (0: none)."""
        if self.eval_per_epoch:
            return max(1, self.steps_per_epoch // self.eval_per_epoch)
        return self.eval_every

    @property
    def run_id(self) -> str:
        """Stable identity: 16 hex digits of the SHA-256 of the canonical JSON."""
        return _digest(self._identity())

    @property
    def cohort_key(self) -> str:
        """Identity of the stack this run can share: everything but the member fields."""
        data = self._identity()
        for name in MEMBER_FIELDS:
            data.pop(name)
        return _digest(data)

    def _identity(self) -> dict[str, object]:
        data = self.model_dump(mode="json")
        for name, default in _LATER_FIELDS.items():
            if name in data and data[name] == default:  # another family's: never there
                del data[name]
        return data

    def norm_settings(self) -> NormSettings:
        sem = get_semantics(self.semantics)
        momentum = sem.bn_momentum if self.bn_momentum is None else 1.0 - self.bn_momentum
        return NormSettings(
            eps=sem.bn_eps if self.bn_eps is None else self.bn_eps,
            momentum=momentum,
            unbiased_running_var=sem.bn_unbiased_running_var,
            groups=self.groups,
            ghost_batch_size=self.ghost_batch_size,
            affine=self.norm_affine,
            gain=self.norm_gain,
        )


def _sectioned(data: dict[str, Any], model: str) -> dict[str, Any]:
    """``data`` (flat) with the family's own settings moved into its section, ``arch``;
    another family's setting is dropped at that family's default, refused otherwise."""
    data = dict(data)
    arch = {**data.pop("arch", {}), "model": data.pop("model", model)}
    for family, section in _SECTIONS.items():
        for field, info in section.model_fields.items():
            if field == "model" or field not in data:
                continue
            value = data.pop(field)
            if family == model:
                arch[field] = value
            elif (tuple(value) if isinstance(value, list) else value) != info.default:
                raise ValueError(f"{field} describes a {family} model: it needs model = {family!r}")
    data["arch"] = arch
    return data


def _digest(data: dict[str, object]) -> str:
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def first_error(err: ValidationError) -> tuple[str, str]:
    """The first problem pydantic found, as (field, one line naming the value); the
    field is empty for a rule across fields. A family's setting is named as a study
    file names it (``kernel``, not ``arch.cnn.kernel``)."""
    problem = err.errors()[0]
    loc = problem["loc"]
    if problem["type"] == "union_tag_invalid":  # the section's tag: the model's name
        tag, tags = problem["ctx"]["tag"], problem["ctx"]["expected_tags"]
        return "model", f"Input should be one of {tags} (got {tag!r})"
    field = str(loc[-1] if loc and loc[0] == "arch" else loc[0]) if loc else ""
    message = problem["msg"].removeprefix("Value error, ")
    return field, f"{message} (got {problem.get('input')!r})" if field else message
