"""Each arm at its best learning rate: a tuned study's selection (``tune`` in a study
file, ``spec.study``).

Every configuration trains over the grid; for each seed, the configuration's outcome is
the run with the highest validation accuracy (at its reported epoch: the last, or the
best-validation one of a run stopped at a plateau). The selection reads validation only,
so a measure on the test split is not biased by it; and each seed selects on its own
runs, so the seeds stay independent replicates of "train the grid, keep the best on
validation", and the paired comparison of two arms compares the two tuned procedures.
A measure on the validation split itself (steps to a validation target) shares the
selection's optimism, in both arms; docs/STATISTICS.md says where that matters.
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence

from normlab.analysis.records import RunRecord
from normlab.types import FINISHED, Status


def _rest(run: RunRecord, fields: Sequence[str]) -> str:
    """The run's configuration without the tuned ``fields``: what one selection keeps
    one run of."""
    data = run.config.model_dump(mode="json")
    return json.dumps({k: v for k, v in data.items() if k not in fields}, sort_keys=True)


def _score(run: RunRecord) -> float:
    """What the selection maximizes: the reported validation accuracy (−∞ for a run
    that diverged or has no validation accuracy)."""
    value = run.final("val_acc") if run.status == Status.DONE else math.nan
    return value if not math.isnan(value) else -math.inf


def select_tuned(runs: Sequence[RunRecord], fields: Sequence[str]) -> list[RunRecord]:
    """One run per configuration of ``runs`` less the tuned ``fields`` (so per seed):
    the one with the best validation accuracy, the first in study order among equals.
    Where a configuration's runs have not all finished, its first unfinished run stands
    for it (no value yet); where all diverged, its first (a diverged outcome)."""
    if not fields:
        return list(runs)
    groups: dict[str, list[RunRecord]] = defaultdict(list)
    for run in runs:
        groups[_rest(run, fields)].append(run)
    kept = []
    for members in groups.values():
        waiting = [r for r in members if r.status not in FINISHED]
        if waiting:
            kept.append(waiting[0])
            continue
        best = max(range(len(members)), key=lambda i: (_score(members[i]), -i))
        kept.append(members[best])
    return kept


def chosen_note(
    kept: Sequence[RunRecord], fields: Sequence[str], arm_of: Callable[[RunRecord], str]
) -> str:
    """Which values the selection kept, per arm, e.g. "learning rate chosen on
    validation: batch 0.003 ×5, 0.01 ×3; none 0.001 ×8"."""
    by_arm: dict[str, list[RunRecord]] = defaultdict(list)
    for run in kept:
        by_arm[arm_of(run)].append(run)
    parts = [f"{arm} {chosen_values(runs, fields)}" for arm, runs in sorted(by_arm.items())]
    names = "/".join("learning rate" if f == "lr" else f for f in fields)
    return f"{names} chosen per seed on validation: " + "; ".join(parts)


def chosen_values(kept: Sequence[RunRecord], fields: Sequence[str]) -> str:
    """The values of ``fields`` the finished runs of ``kept`` hold, with how many runs
    (seeds) hold each, e.g. "0.003 ×2, 0.01 ×1"."""
    counts = Counter(tuple(getattr(r.config, f) for f in fields)
                     for r in kept if r.status == Status.DONE)  # fmt: skip
    return ", ".join(f"{'/'.join(f'{v:g}' for v in values)} ×{n}"
                     for values, n in sorted(counts.items()))  # fmt: skip
