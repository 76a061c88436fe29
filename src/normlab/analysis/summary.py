"""Per-configuration summaries over seeds: mean and 95% confidence interval.

The interval is Student's t over the seeds' reported values (the last epoch's, or the
best-validation epoch's of a run stopped at a plateau): mean ± t₀.₉₇₅,ₙ₋₁ · s/√n; with one
seed there is no interval. Diverged runs are counted, not averaged in. In a tuned study
(``tune``) each seed of a configuration counts its run best on validation.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
from scipy import stats

from normlab.analysis.records import RunRecord, study_record
from normlab.analysis.tuning import chosen_values, select_tuned
from normlab.store.db import Store
from normlab.types import FINISHED, Status

# Config fields that never define a group: they identify members or bookkeeping.
_NOT_FACTORS = ("seed", "carried_from", "stream", "log_every")


@dataclass(frozen=True)
class Estimate:
    """Mean of ``n`` values with the half-width of its 95% interval (NaN when n < 2)."""

    mean: float
    half_width: float
    n: int

    @classmethod
    def of(cls, values: list[float]) -> Estimate:
        x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
        if len(x) == 0:
            return cls(math.nan, math.nan, 0)
        if len(x) == 1:
            return cls(float(x[0]), math.nan, 1)
        sem = x.std(ddof=1) / math.sqrt(len(x))
        return cls(float(x.mean()), float(stats.t.ppf(0.975, len(x) - 1) * sem), len(x))

    def format(self, digits: int = 4, scale: float = 1.0) -> str:
        if self.n == 0:
            return "—"
        if math.isnan(self.half_width):
            return f"{self.mean * scale:.{digits}f}"
        return f"{self.mean * scale:.{digits}f} ± {self.half_width * scale:.{digits}f}"


@dataclass(frozen=True)
class GroupSummary:
    """One configuration (all factors but the seed) summarized over its runs."""

    factors: dict[str, object]
    runs: int
    finished: int
    diverged: int
    test_acc: Estimate
    test_loss: Estimate
    epoch_seconds: Estimate
    chosen: str = ""  # a tuned study's: the values the seeds chose, e.g. "0.003 ×2, 0.01 ×1"


@dataclass(frozen=True)
class StudySummary:
    study: str
    factors: list[str]
    groups: list[GroupSummary]
    tuned: tuple[str, ...] = ()  # the fields each seed's run was chosen over


def summarize(store: Store, study: str, factors: list[str] | None = None) -> StudySummary:
    """Group ``study``'s runs by ``factors`` (default: the config fields that vary in it,
    the seed and a tuned study's tuned fields aside) and summarize each group."""
    record = study_record(store, study)
    runs = record.runs
    configs = {r.run_id: r.config.model_dump(mode="json") for r in runs}
    tune = tuple(record.spec.get("tune") or {})
    if factors is None:
        keys = [k for k in next(iter(configs.values()), {}) if k not in (*_NOT_FACTORS, *tune)]
        factors = [k for k in keys if len({json.dumps(c[k]) for c in configs.values()}) > 1]
    tuned = tuple(f for f in tune if f not in factors)  # grouped by it: every value shown
    kept = {r.run_id for r in select_tuned(runs, tuned)}
    groups: dict[str, list[RunRecord]] = defaultdict(list)
    for r in runs:
        groups[json.dumps([configs[r.run_id][f] for f in factors])].append(r)
    out = []
    for members in groups.values():
        chosen = [r for r in members if r.run_id in kept]
        done = [r for r in chosen if r.reported is not None]
        out.append(
            GroupSummary(
                factors={f: configs[members[0].run_id][f] for f in factors},
                runs=len(members),
                finished=sum(r.status in FINISHED for r in members),
                diverged=sum(r.status == Status.DIVERGED for r in members),
                test_acc=Estimate.of([r.reported.test_acc for r in done]),
                test_loss=Estimate.of([r.reported.test_loss for r in done]),
                epoch_seconds=Estimate.of(
                    [float(np.mean([e.seconds for e in r.epochs])) for r in done]
                ),
                chosen=chosen_values(done, tuned) if tuned else "",
            )
        )
    return StudySummary(study=study, factors=factors, groups=out, tuned=tuned)

