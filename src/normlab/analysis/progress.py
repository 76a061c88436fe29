"""Where a study stands while it runs: its runs finished, running and queued, the share
of its work done, and the time left at the pace the work has moved lately. What the
live report shows; read from the database, nothing trained.

Work is counted as the plan counts it (``Unit.work``: a run's steps weighed by what a
step of its model and batch costs), so that a run of the CNN is not one more tick than
a run of a small MLP. A running run counts by the steps its attempt has taken, which
the driver records every few seconds.
"""

from __future__ import annotations

import functools
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from normlab.experiments.plan import Unit
from normlab.spec.config import RunConfig
from normlab.store.db import Store
from normlab.types import FINISHED, Status


@dataclass(frozen=True)
class Standing:
    """A study's runs by where they are (``running``: under a live lease; ``queued``:
    not started, or left by a process that stopped), and its work done and in all."""

    runs: int = 0
    finished: int = 0
    diverged: int = 0
    running: int = 0
    queued: int = 0
    failed: int = 0
    work_done: float = 0.0
    work_total: float = 0.0
    outcomes: int = 0  # changes whenever a run's status does (what a page shows moved)

    @property
    def ended(self) -> bool:
        """Whether every run has an outcome (finished, diverged or failed)."""
        return self.finished + self.failed == self.runs

    @property
    def fraction(self) -> float:
        """The share of the work done, 0 to 1."""
        return self.work_done / self.work_total if self.work_total else 1.0


def standing(
    runs: Iterable[tuple[RunConfig, Status | None, int | None, float | None]],
    now: float | None = None,
) -> Standing:
    """The standing of ``runs``, each given as (config, status, steps taken by its
    attempt, lease end in seconds since the epoch); status None: not in the database
    yet (queued)."""
    now = time.time() if now is None else now
    counts = dict.fromkeys(("runs", "finished", "diverged", "running", "queued", "failed"), 0)
    done = total = 0.0
    statuses = []
    for config, status, steps, lease_until in runs:
        statuses.append((config.run_id, status))
        work = _work(config)
        total += work
        counts["runs"] += 1
        if status in FINISHED:
            counts["finished"] += 1
            counts["diverged"] += status == Status.DIVERGED
            done += work
        elif status == Status.FAILED:
            counts["failed"] += 1
        elif status == Status.RUNNING and (lease_until or 0) > now:
            counts["running"] += 1
            done += work * min((steps or 0) / max(Unit((config,)).steps, 1), 1)
        else:
            counts["queued"] += 1
    return Standing(**counts, work_done=done, work_total=total, outcomes=hash(tuple(statuses)))


@functools.lru_cache(maxsize=65536)  # a live report weighs the same runs every second
def _work(config: RunConfig) -> float:
    return Unit((config,)).work


def study_standing(store: Store, study: str, now: float | None = None) -> Standing:
    """The standing of the runs of ``study`` in ``store``."""
    rows = store.runs(study)
    return standing(((RunConfig.from_stored(r.config), r.status, r.progress, r.lease_until)
                     for r in rows), now)  # fmt: skip


def configs_standing(
    store: Store, configs: Sequence[RunConfig], now: float | None = None
) -> Standing:
    """The standing of ``configs`` (runs of several studies, some perhaps not yet in the
    database: queued)."""
    states = store.run_states(c.run_id for c in configs)
    rows = []
    for c in configs:
        s = states.get(c.run_id)
        rows.append((c, *((s.status, s.progress, s.lease_until) if s else (None,) * 3)))
    return standing(rows, now)


class Pace:
    """The time left at the pace of the work done lately: ``observe`` the work done now
    and then; over the last ``window`` seconds of observations (from the last look
    before it first moved), the work moved this much in that long. None until it has
    moved."""

    def __init__(self, window: float = 120.0) -> None:
        self.window = window
        self._seen: deque[tuple[float, float]] = deque()

    def observe(self, when: float, done: float) -> None:
        """The work done as seen at ``when`` (seconds, any clock that only goes on)."""
        if self._seen and done < self._seen[-1][1]:  # work redone (a unit started over)
            self._seen.clear()
        self._seen.append((when, done))
        while len(self._seen) > 2 and when - self._seen[1][0] >= self.window:
            self._seen.popleft()
        # the pace is measured from the last look before the work moved: the time
        # before it (a process starting, reading its data) says nothing of the rest
        while len(self._seen) > 2 and self._seen[0][1] == self._seen[1][1]:
            self._seen.popleft()

    def seconds_left(self, remaining: float) -> float | None:
        """Seconds until ``remaining`` more work is done at the recent pace."""
        if len(self._seen) < 2:
            return None
        (t0, d0), (t1, d1) = self._seen[0], self._seen[-1]
        if d1 <= d0 or t1 <= t0:
            return None
        return remaining * (t1 - t0) / (d1 - d0)
