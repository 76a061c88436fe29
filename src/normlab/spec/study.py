"""Study files: fixed settings plus a grid of factors, expanded into runs.

A study file is TOML::

    name = "bn-vs-batch-size"
    seeds = 3                      # shorthand for grid.seed = [0, 1, 2]
    [fixed]                        # any run field (see RunConfig), one value each
    inputs = "scaled"
    [grid]                         # any run field, a list of values each
    norm = ["none", "batch"]
    batch_size = [32, 256]

``depth`` and ``width`` may stand in for ``hidden`` (``hidden = [width] * depth``).
The runs are the Cartesian product of the grid over the fixed settings.

A study may also name budgets, each overriding seeds, fixed settings or grid entries
of the file's own (the ``standard`` budget)::

    [budget.quick]
    seeds = 2
    fixed = { epochs = 1 }
    grid = { batch_size = [128] }

``tune`` names a learning-rate grid every configuration trains over, so that each arm
is compared at its best rate, chosen per seed on validation accuracy, never on test
(``analysis.tuning``)::

    tune = { lr = [3e-4, 1e-3, 3e-3, 1e-2] }

The rates of one configuration stack into one unit (each member has its own), so the
grid costs less than a study per rate.
"""

from __future__ import annotations

import itertools
import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from normlab.spec.config import INTERNAL_FIELDS, RunConfig, first_error

SHORTHANDS = ("depth", "width")
TUNABLE = ("lr",)  # the fields a study may tune (each member of a stack has its own)


class StudyError(ValueError):
    """A study that cannot be run; the message is one line naming file, field and value."""


@dataclass(frozen=True)
class Study:
    """A named set of runs, with the description stored alongside them (``spec``)."""

    name: str
    spec: dict[str, object]
    configs: list[RunConfig]


BUDGETS = ("quick", "standard", "full")


class Budget(BaseModel):
    """What one budget changes in a study."""

    model_config = ConfigDict(extra="forbid")

    seeds: int | None = Field(None, ge=1)
    fixed: dict[str, Any] = {}
    grid: dict[str, list[Any]] = {}
    tune: dict[str, list[Any]] = {}


class StudySpec(BaseModel):
    """A study as declared: name, fixed settings and a grid (and optional budgets)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    description: str = ""
    seeds: int | None = Field(None, ge=1, description="shorthand for grid.seed = range(seeds)")
    fixed: dict[str, Any] = {}
    grid: dict[str, list[Any]] = {}
    tune: dict[str, list[Any]] = Field(
        {}, description="learning rates each configuration trains over, the best per seed "
        "on validation compared"
    )
    budget: dict[Literal[BUDGETS], Budget] = {}  # type: ignore[valid-type]

    def with_budget(self, budget: str) -> StudySpec:
        """This study at ``budget``: its overrides applied, the name suffixed by it.

        ``standard`` is the file as written; a budget the file does not name changes
        nothing but the name.
        """
        if budget not in BUDGETS:
            raise StudyError(f"budget must be one of {', '.join(BUDGETS)}, got {budget!r}")
        o = self.budget.get(budget, Budget())
        return StudySpec(
            name=f"{self.name}-{budget}",
            description=self.description,
            seeds=o.seeds or self.seeds,
            # a budget may move a factor between fixed and grid
            fixed={**{k: v for k, v in self.fixed.items() if k not in o.grid}, **o.fixed},
            grid={**{k: v for k, v in self.grid.items() if k not in o.fixed}, **o.grid},
            tune=o.tune or self.tune,
        )

    def study(self, source: str = "<study>") -> Study:
        """This study's runs under its name, the file's content as its description."""
        return Study(self.name, self.model_dump(), self.runs(source))

    def to_toml(self) -> str:
        """This study as a study file that ``load_study`` reads back to the same runs
        (budgets included; a report embeds it so that a reader can rerun the study)."""

        def table(values: dict[str, Any]) -> list[str]:
            # JSON's strings, numbers, booleans and arrays are TOML's too
            return [f"{k} = {json.dumps(v)}" for k, v in values.items()]

        lines = [f"name = {json.dumps(self.name)}"]
        if self.description:
            lines.append(f"description = {json.dumps(self.description)}")
        if self.seeds is not None:
            lines.append(f"seeds = {self.seeds}")
        for section, values in (("fixed", self.fixed), ("grid", self.grid), ("tune", self.tune)):
            if values:
                lines += ["", f"[{section}]", *table(values)]
        for budget, o in self.budget.items():
            lines += ["", f"[budget.{budget}]"]
            if o.seeds is not None:
                lines.append(f"seeds = {o.seeds}")
            lines += [f"{key} = {{ {', '.join(table(v))} }}" for key, v in
                      (("fixed", o.fixed), ("grid", o.grid), ("tune", o.tune)) if v]  # fmt: skip
        return "\n".join(lines) + "\n"

    def runs(self, source: str = "<study>") -> list[RunConfig]:
        """Every run of the study, validated; StudyError names the offending field."""
        grid = {**self.grid, **self._tuned(source)}
        if self.seeds is not None:
            if "seed" in grid or "seed" in self.fixed:
                raise StudyError(f"{source}: seeds: give either seeds or a seed field, not both")
            grid["seed"] = list(range(self.seeds))
        for key, values in grid.items():
            if not values:
                raise StudyError(f"{source}: grid.{key}: empty list of values")
            if key in self.fixed:
                raise StudyError(f"{source}: {key}: set both in fixed and in grid")
        for section, fields in (("fixed", self.fixed), ("grid", grid)):
            internal = [k for k in fields if k in INTERNAL_FIELDS]
            if internal:
                raise StudyError(f"{source}: {section}.{internal[0]}: {_unknown_field()}")
        keys = list(grid)
        configs: list[RunConfig] = []
        for combo in itertools.product(*(grid[k] for k in keys)):
            chosen = dict(zip(keys, combo, strict=True))
            settings = _expand_shorthands({**self.fixed, **chosen}, source)
            try:
                configs.append(RunConfig(**settings))
            except ValidationError as err:
                raise StudyError(_one_line(err, source, grid, chosen, self.tune)) from None
        return list(dict.fromkeys(configs))  # a grid may name one run twice


    def _tuned(self, source: str) -> dict[str, list[Any]]:
        """The ``tune`` grid, checked: fields a study may tune, each a list of values
        and set nowhere else."""
        for key, values in self.tune.items():
            if key not in TUNABLE:
                raise StudyError(f"{source}: tune.{key}: only {', '.join(TUNABLE)} can be tuned")
            if len(values) < 2:
                raise StudyError(f"{source}: tune.{key}: give at least two values to choose "
                                 f"from, got {values!r}")  # fmt: skip
            if key in self.fixed or key in self.grid:
                raise StudyError(f"{source}: {key}: set both in tune and in "
                                 f"{'fixed' if key in self.fixed else 'grid'}")  # fmt: skip
        return self.tune


def _expand_shorthands(settings: dict[str, Any], source: str) -> dict[str, Any]:
    if not any(k in settings for k in SHORTHANDS):
        return settings
    if "hidden" in settings:
        raise StudyError(f"{source}: hidden: give either hidden or depth/width, not both")
    depth, width = settings.pop("depth", 1), settings.pop("width", 512)
    if not isinstance(depth, int) or not isinstance(width, int) or depth < 1 or width < 1:
        raise StudyError(f"{source}: depth/width must be positive integers, got {depth}/{width}")
    return {**settings, "hidden": [width] * depth}


def _one_line(
    err: ValidationError,
    source: str,
    grid: dict[str, list[Any]],
    chosen: dict[str, Any],
    tune: dict[str, list[Any]],
) -> str:
    field, message = first_error(err)
    if not field:  # a rule across fields: say which combination broke it
        where = ", ".join(f"{k}={v!r}" for k, v in chosen.items()) or "fixed settings"
        return f"{source}: {message} (at {where})"
    section = "tune" if field in tune else "grid" if field in grid else "fixed"
    if err.errors()[0]["type"] == "extra_forbidden":
        message = _unknown_field()
    return f"{source}: {section}.{field}: {message}"


def _unknown_field() -> str:
    fields = [f for f in RunConfig.field_names() if f not in INTERNAL_FIELDS]
    return f"unknown field (allowed: {', '.join([*fields, *SHORTHANDS])})"


def load_study(path: Path | str) -> StudySpec:
    """Parse and validate the study file at ``path``."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise StudyError(f"{path}: no such study file") from None
    except tomllib.TOMLDecodeError as err:
        raise StudyError(f"{path}: not valid TOML: {err}") from None
    try:
        spec = StudySpec(**data)
    except ValidationError as err:
        first = err.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        if first["type"] == "extra_forbidden":
            allowed = ", ".join(StudySpec.model_fields)
            raise StudyError(f"{path}: {loc}: unknown key (allowed: {allowed})") from None
        raise StudyError(f"{path}: {loc}: {first['msg']} (got {first.get('input')!r})") from None
    spec.runs(str(path))  # validate every run now, before anything trains
    return spec
