"""Per-configuration summaries over seeds: mean and 95% confidence interval.

The interval is Student's t over the seeds' final-epoch values (mean ± t₀.₉₇₅,ₙ₋₁ · s/√n);
with one seed there is no interval. Diverged runs are counted, not averaged in.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from normlab.spec.config import RunConfig
from normlab.store.db import Store
from normlab.types import FINISHED, Status, StoredRun

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


@dataclass(frozen=True)
class StudySummary:
    study: str
    factors: list[str]
    groups: list[GroupSummary]


def summarize(store: Store, study: str, factors: list[str] | None = None) -> StudySummary:
    """Group ``study``'s runs by ``factors`` (default: the config fields that vary in it,
    the seed aside) and summarize each group."""
    runs = store.runs(study)
    configs = {r.id: RunConfig.as_stored_row(r.config) for r in runs}
    if factors is None:
        keys = [k for k in next(iter(configs.values()), {}) if k not in _NOT_FACTORS]
        factors = [k for k in keys if len({json.dumps(c[k]) for c in configs.values()}) > 1]
    epochs = store.epochs(study)
    groups: dict[str, list[StoredRun]] = {}
    for r in runs:
        key = json.dumps([configs[r.id][f] for f in factors])
        groups.setdefault(key, []).append(r)
    out = []
    for members in groups.values():
        done = [epochs[r.id] for r in members if r.status == Status.DONE and r.id in epochs]
        out.append(
            GroupSummary(
                factors={f: configs[members[0].id][f] for f in factors},
                runs=len(members),
                finished=sum(r.status in FINISHED for r in members),
                diverged=sum(r.status == Status.DIVERGED for r in members),
                test_acc=Estimate.of([e[-1].test_acc for e in done]),
                test_loss=Estimate.of([e[-1].test_loss for e in done]),
                epoch_seconds=Estimate.of([float(np.mean([x.seconds for x in e])) for e in done]),
            )
        )
    return StudySummary(study=study, factors=factors, groups=out)
