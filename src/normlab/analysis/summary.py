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
    configs = {r["id"]: RunConfig.as_stored_row(r["config"]) for r in runs}
    if factors is None:
        keys = [k for k in next(iter(configs.values()), {}) if k not in _NOT_FACTORS]
        factors = [k for k in keys if len({json.dumps(c[k]) for c in configs.values()}) > 1]
    last: dict[str, dict] = {}
    seconds: dict[str, list[float]] = {}
    for e in store.epochs(study):
        last[e["run_id"]] = dict(e)
        seconds.setdefault(e["run_id"], []).append(e["seconds"])
    groups: dict[str, list] = {}
    for r in runs:
        key = json.dumps([configs[r["id"]][f] for f in factors])
        groups.setdefault(key, []).append(r)
    out = []
    for members in groups.values():
        done = [r for r in members if r["status"] == "done" and r["id"] in last]
        out.append(
            GroupSummary(
                factors={f: configs[members[0]["id"]][f] for f in factors},
                runs=len(members),
                finished=sum(r["status"] in ("done", "diverged") for r in members),
                diverged=sum(r["status"] == "diverged" for r in members),
                test_acc=Estimate.of([last[r["id"]]["test_acc"] for r in done]),
                test_loss=Estimate.of([last[r["id"]]["test_loss"] for r in done]),
                epoch_seconds=Estimate.of([float(np.mean(seconds[r["id"]])) for r in done]),
            )
        )
    return StudySummary(study=study, factors=factors, groups=out)
