"""One run's full configuration: everything its numbers depend on besides the machine.

A run is identified by the SHA-256 of its canonical JSON, so the same configuration in
two studies is one run, trained once.
"""

from __future__ import annotations

import hashlib
import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from normlab.models.init import INIT_SCHEMES
from normlab.models.norms import NormSettings
from normlab.models.semantics import get_semantics

Norm = Literal["none", "batch", "layer", "group", "rms", "batch_renorm", "ghost_batch"]
InitScheme = Literal[INIT_SCHEMES]  # type: ignore[valid-type]
BATCH_NORMS = ("batch", "batch_renorm", "ghost_batch")

# Fields that may differ between the members of one stack.
MEMBER_FIELDS = ("seed", "lr")
PROBES = ("layers", "activations", "ics", "smoothness", "bn")
# Fields added after the first release, left out of a run's identity while at their
# default, so that runs recorded before them keep their ids.
_LATER_FIELDS = {"probes": [], "probe_every": 100, "eval_every": 0, "dropout_position": "after"}


class RunConfig(BaseModel):
    """One training run. Defaults are the seed notebook's setup."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dataset: Literal["mnist", "fashion-mnist"] = "mnist"
    inputs: Literal["raw", "scaled", "standardized"] = "raw"
    val_size: int = Field(5000, ge=0, le=50000)
    data_seed: int = Field(0, ge=0)
    hidden: tuple[int, ...] = Field((512,), min_length=1)
    activation: Literal["relu", "tanh", "sigmoid"] = "relu"
    norm: Norm = "none"
    norm_position: Literal["before", "after"] = "before"
    dropout: float = Field(0.2, ge=0.0, lt=1.0)
    dropout_position: Literal["before", "after"] = Field(
        "after",
        description="after: at the hidden block's end (the seed's); before: right after "
        "the dense layer, feeding the norm",
    )
    semantics: Literal["keras", "torch"] = "keras"
    init: InitScheme | None = Field(None, description="default: the semantics preset's")
    init_scale: float = Field(1.0, gt=0.0)
    groups: int = Field(32, ge=1)
    ghost_batch_size: int = Field(32, ge=2)
    optimizer: Literal["adam", "sgd"] = "adam"
    lr: float = Field(1e-3, gt=0.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0, description="SGD only")
    nesterov: bool = False
    batch_size: int = Field(32, ge=1)
    epochs: int = Field(5, ge=1)
    seed: int = Field(0, ge=0)
    log_every: int = Field(1, ge=1, description="keep every n-th step's training loss")
    probes: tuple[Literal[PROBES], ...] = Field(  # type: ignore[valid-type]
        (), description="instruments to record (normlab.probes); none cost nothing"
    )
    probe_every: int = Field(100, ge=1, description="steps between probe measurements")
    eval_every: int = Field(
        0, ge=0, description="steps between validation evaluations (0: each epoch's end only)"
    )
    # Set only by procedures that carry one model through several trainings (the
    # notebook as written): the run whose final weights this one starts from, and
    # which random streams it draws data order and dropout from.
    carried_from: str | None = None
    stream: int = Field(0, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _resolve_init(cls, data: object) -> object:
        if isinstance(data, dict) and data.get("init") is None:
            data = {**data, "init": get_semantics(data.get("semantics", "keras")).init}
        return data

    @model_validator(mode="after")
    def _check_combination(self) -> RunConfig:
        if any(w < 1 for w in self.hidden):
            raise ValueError(f"hidden widths must be positive, got {list(self.hidden)}")
        if self.norm in BATCH_NORMS and self.batch_size < 2:
            raise ValueError(f"norm {self.norm!r} needs batch_size >= 2, got {self.batch_size}")
        if self.norm == "group" and any(w % self.groups for w in self.hidden):
            raise ValueError(f"groups {self.groups} must divide every hidden width {self.hidden}")
        if (
            self.norm == "ghost_batch"
            and self.batch_size > self.ghost_batch_size
            and self.batch_size % self.ghost_batch_size
        ):
            raise ValueError(
                f"ghost_batch_size {self.ghost_batch_size} must divide batch_size {self.batch_size}"
            )
        if self.nesterov and (self.optimizer != "sgd" or self.momentum == 0):
            raise ValueError("nesterov needs optimizer 'sgd' with momentum > 0")
        return self

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
            if data[name] == default:
                del data[name]
        return data

    def norm_settings(self) -> NormSettings:
        sem = get_semantics(self.semantics)
        return NormSettings(
            eps=sem.bn_eps,
            momentum=sem.bn_momentum,
            unbiased_running_var=sem.bn_unbiased_running_var,
            groups=self.groups,
            ghost_batch_size=self.ghost_batch_size,
        )


def _digest(data: dict[str, object]) -> str:
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]
