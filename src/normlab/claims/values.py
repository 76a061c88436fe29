"""The measured values behind every verdict, one row per claim, comparison group, arm
and seed: what ``normlab export --table measures`` writes, so that anyone can recompute
each verdict's tests and Holm correction with scipy alone (docs/STATISTICS.md)."""

from __future__ import annotations

import functools

from normlab.analysis.records import records
from normlab.claims.claim import Claim, study_name
from normlab.claims.definitions import CLAIMS
from normlab.claims.judge import ClaimResult, judge_runs
from normlab.spec.settings import SETTINGS
from normlab.spec.study import BUDGETS, StudyError
from normlab.store.db import Store

COLUMNS = ["claim", "group", "arm", "role", "seed", "value", "kind", "min_effect", "direction",
           "absent"]


def claims_of(study: str) -> list[int]:
    """The claims judged on the built-in study named ``study`` (at any budget, in any
    setting)."""
    return _claims_by_study().get(study, [])


@functools.cache
def _claims_by_study() -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for c in CLAIMS.values():
        for setting in (s for s in SETTINGS if not c.not_applicable(s)):
            for budget in BUDGETS:
                out.setdefault(study_name(c, budget, setting), []).append(c.id)
    return out


def rows_of(claim: Claim, result: ClaimResult) -> list[dict[str, object]]:
    """The values ``result``'s comparisons rest on: ``role`` is "arm" for the claim's arm
    and "baseline" for each arm it is set against, paired by seed within a group (NaN:
    no outcome, left out of its pairs). Context arms are not part of the verdict."""
    out = []
    for group, by_arm in sorted(result.values.items()):
        for arm, by_seed in by_arm.items():
            if arm not in (claim.arm, *claim.baselines):
                continue
            row = {
                "claim": claim.id,
                "group": group,
                "arm": arm,
                "role": "arm" if arm == claim.arm else "baseline",
                "kind": claim.kind,
                "min_effect": claim.rule.min_effect,
                "direction": claim.rule.direction,
                "absent": claim.rule.absent,
            }
            out += [{**row, "seed": s, "value": v} for s, v in sorted(by_seed.items())]
    return out


def measure_rows(store: Store, study: str) -> list[dict[str, object]]:
    """The rows of every claim judged on ``study`` (a claim's built-in study)."""
    numbers = claims_of(study)
    if not numbers:
        raise StudyError(f"study {study!r} is no claim's: measures are the claims' values")
    runs = records(store, study)
    return [row for n in numbers for row in rows_of(CLAIMS[n], judge_runs(CLAIMS[n], runs))]
