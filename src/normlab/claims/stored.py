"""Claims judged from what a database already holds, training nothing: what a report of
a claims run (finished, still running or interrupted) shows."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from normlab.analysis.records import RunRecord, StudyRecord, study_record
from normlab.analysis.tuning import select_tuned
from normlab.claims.auto import BASE, auto_name, design_of, judge_auto, sequential
from normlab.claims.claim import Claim, study_name
from normlab.claims.definitions import CLAIMS, selected
from normlab.claims.judge import ClaimResult, judge_runs, not_applicable
from normlab.spec.settings import SEED, Setting
from normlab.store.db import Store
from normlab.types import FINISHED, Status

WAITING = (Status.QUEUED, Status.RUNNING)  # runs that will still get an outcome


@dataclass(frozen=True)
class StoredClaim:
    """One claim at a budget: its study as stored (None when the database has none of
    it) and its verdict from the finished runs there (None without a study)."""

    claim: Claim
    budget: str
    study_name: str
    study: StudyRecord | None
    result: ClaimResult | None

    @property
    def runs(self) -> list[RunRecord]:
        return self.study.runs if self.study else []

    @functools.cached_property
    def shown(self) -> list[RunRecord]:
        """The runs its figures show: a tuned claim's seeds each by its run best on
        validation (``analysis.tuning``), as the verdict reads them; else all."""
        return select_tuned(self.runs, self.claim.tune)

    @property
    def unfinished(self) -> list[RunRecord]:
        """The study's runs without an outcome yet (queued, running or failed)."""
        return [r for r in self.runs if r.status not in FINISHED]


def stored_claims(
    store: Store,
    budget: str,
    ids: list[int] | None = None,
    setting: Setting = SEED,
    *,
    settled: bool = False,
) -> list[StoredClaim]:
    """Each claim of ``ids`` (default: all, parts after their claim) judged from
    ``store``'s runs of its built-in study at ``budget`` in ``setting``; a study shared
    by two claims is read once. A claim that does not apply to the setting has no study
    and a "not applicable" result saying why. With ``settled``, a claim whose study still
    has runs queued or running is not judged yet (no result; what a live view shows
    rather than a verdict that moves as runs land)."""
    studies: dict[str, StudyRecord | None] = {}
    names = set(store.study_names())
    out = []
    for n in selected(ids if ids is not None else list(CLAIMS)):
        claim = CLAIMS[n]
        if claim.not_applicable(setting):
            out.append(StoredClaim(claim, budget, "", None, not_applicable(claim, setting)))
            continue
        design = design_of(budget) if sequential(claim) else None
        fixed = BASE if design_of(budget) and not design else budget  # GAN claims under auto
        name = (auto_name(claim, setting, design) if design
                else study_name(claim, fixed, setting))  # fmt: skip
        if name not in studies:
            studies[name] = study_record(store, name) if name in names else None
        study = studies[name]
        waiting = study is not None and any(r.status in WAITING for r in study.runs)
        result = None
        if study and not (settled and waiting):
            result = (
                judge_auto(claim, study.runs, design) if design else judge_runs(claim, study.runs)
            )
        out.append(StoredClaim(claim, budget, name, study, result))
    return out
