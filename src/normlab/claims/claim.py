"""What a claim is (``Claim``: its study, outcome, comparisons and verdict rule) and
how its built-in study is found and checked against it (``claim_study``). The claims
themselves are declared in ``claims.definitions``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources

from normlab.analysis.records import RunRecord
from normlab.analysis.verdict import Rule
from normlab.spec.config import RunConfig
from normlab.spec.settings import DATASETS, MODELS, SEED, Setting
from normlab.spec.study import StudyError, StudySpec, load_study


class ClaimError(ValueError):
    """A claim that does not fit its study; the message names the claim and the field."""


@dataclass(frozen=True)
class Claim:
    """One claim and how normlab judges it."""

    id: int
    claim: str
    study: str
    outcome: str
    # one or more measures of the outcome (e.g. one per target), each compared apart
    measures: dict[str, Callable[..., float]]
    rule: Rule
    by: tuple[str, ...]
    kind: str = "continuous"
    # the runs the claim is about (e.g. deep networks only); the others are context only
    where: Callable[[RunConfig], bool] | None = None
    # a factor (or several) whose values each seed's measure takes together (the
    # measures then get the list of that seed's runs over them), e.g. the learning rate
    # for "usable LRs", or norm and inputs for a difference in differences
    across: str | tuple[str, ...] | None = None
    # the factor that tells the arms apart, the arm's value of it, and the baselines the
    # verdict compares the arm with. Without a factor every run is the arm, and its
    # measure (a difference within the run, e.g. a log ratio) is set against 0. Several
    # fields together name an arm "field=value, field=value".
    factor: str | tuple[str, ...] | None = "norm"
    arm: str = "batch"
    baselines: tuple[str, ...] = ("none",)
    # Comparisons shown beside the verdict but outside it (and outside its Holm
    # correction): the arm against further baselines, and further measures of the arm
    # against the first baseline.
    context: tuple[str, ...] = ()
    context_measures: dict[str, Callable[..., float]] = field(default_factory=dict)
    # the seed claim this one is a part of (``--only`` with that number includes it)
    part_of: int | None = None
    # a sentence about the claim's runs that the verdict does not rest on
    note: Callable[[list[RunRecord]], str] | None = None
    # a few words for tables that must fit 80 columns (the claim itself goes below)
    title: str = ""
    # the figure that shows its evidence: "module:name" of a builder (stored claim,
    # colors) -> figures, loaded by the report only (e.g. a ``FactorFigure``); "": none
    evidence: str = ""
    # the settings it applies to (a claim about the seed's MLP does not apply to a CNN)
    models: tuple[str, ...] = ("mlp", "cnn")
    datasets: tuple[str, ...] = ("mnist", "fashion-mnist")
    # measures that depend on the setting (e.g. its target accuracies): setting -> the
    # measures in it, in place of ``measures``
    measures_by_setting: Callable[[Setting], dict[str, Callable[..., float]]] | None = None
    # the fields its study tunes (the study file's ``tune``): each arm's seed is judged
    # by its run of the grid best on validation (``analysis.tuning``); the comparison at
    # the default learning rate, the seed notebook's condition, is shown as context
    tune: tuple[str, ...] = ()

    def measures_in(self, setting: Setting) -> dict[str, Callable[..., float]]:
        """The claim's measures in ``setting``."""
        if self.measures_by_setting is None:
            return self.measures
        return self.measures_by_setting(setting)

    def not_applicable(self, setting: Setting) -> str:
        """Why the claim does not apply to ``setting`` ("" when it does)."""
        if setting.model in self.models and setting.dataset in self.datasets:
            return ""
        scope = []
        if self.models != tuple(MODELS):
            scope.append("the " + "/".join(MODELS[m] for m in self.models))
        if self.datasets != tuple(DATASETS):
            scope.append("on " + "/".join(DATASETS[d] for d in self.datasets))
        return f"claim {self.id} is about {' '.join(scope)} only"

    @property
    def factors(self) -> tuple[str, ...]:
        """The fields that tell the arms apart."""
        return (self.factor,) if isinstance(self.factor, str) else (self.factor or ())

    def arm_of(self, config: RunConfig) -> str:
        """Which arm a run of the claim's study belongs to."""
        if isinstance(self.factor, str):
            return str(getattr(config, self.factor))
        if self.factor is None:
            return self.arm
        return ", ".join(f"{f}={getattr(config, f)}" for f in self.factor)

    def check(self, runs: list[RunConfig], source: str) -> None:
        """Fail with a clear message unless ``runs`` (the claim's study; those ``where``
        keeps) hold the arm and its baselines and vary only in factors the claim
        compares, spans, tunes or pairs on."""
        runs = [c for c in runs if self.where is None or self.where(c)]
        if self.factor is not None:
            arms = {self.arm_of(c) for c in runs}
            missing = [a for a in (self.arm, *self.baselines) if a not in arms]
            if missing:
                arm = f"the arm {missing[0]!r}"
                if isinstance(self.factor, str):
                    arm = f"{self.factor}={missing[0]!r}"
                raise ClaimError(f"claim {self.id}: {source} has no run with {arm}")
        across = (self.across,) if isinstance(self.across, str) else (self.across or ())
        handled = {"seed", *self.by, *self.factors, *self.tune, *across}
        dumps = [c.model_dump(mode="json") for c in runs]
        for name in RunConfig.field_names():
            if name not in handled and len({repr(d.get(name)) for d in dumps}) > 1:
                raise ClaimError(
                    f"claim {self.id}: {source} varies {name!r}, which the claim neither "
                    f"compares by, spans nor tells its arms apart with"
                )


def claim_study(claim: Claim, budget: str, setting: Setting = SEED) -> StudySpec:
    """The built-in study of ``claim`` at ``budget`` (quick, standard or full) in
    ``setting``, checked against the claim; ClaimError where it does not apply."""
    spec, path = _declared(claim, budget, setting)
    if tuple(spec.tune) != claim.tune:
        raise ClaimError(f"claim {claim.id}: study {spec.name} tunes {tuple(spec.tune)!r}, "
                         f"the claim {claim.tune!r}")  # fmt: skip
    try:
        claim.check(spec.runs(path), f"study {spec.name}")
    except StudyError as err:
        raise ClaimError(f"claim {claim.id}: {err}") from None
    return spec


def study_name(claim: Claim, budget: str, setting: Setting = SEED) -> str:
    """The name of ``claim_study``'s study, without expanding its runs."""
    return _declared(claim, budget, setting)[0].name


def _declared(claim: Claim, budget: str, setting: Setting) -> tuple[StudySpec, str]:
    """The claim's study file at ``budget`` in ``setting``, and where it was read."""
    reason = claim.not_applicable(setting)
    if reason:
        raise ClaimError(reason)
    source = resources.files("normlab.claims.studies") / f"{claim.study}.toml"
    with resources.as_file(source) as path:
        return setting.apply(load_study(path).with_budget(budget), budget), str(path)
