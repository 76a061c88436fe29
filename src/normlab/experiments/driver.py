"""The driver: hands a study's units to an executor, claims each before it trains, and
records what comes back. It is the only writer to the database, whatever the executor.

Several drivers may share one database (``store.leases``): each claims a unit just before
training it, so they split the work. A unit another driver holds is skipped and looked
at again after a pause: if that driver finishes it, it is done; if its lease ends (the
driver died), this one takes it over. A driver stops when every unit of the study is
finished, or failed under itself (a failure is retried by the next call, not this one).
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from normlab.experiments.executors import Executor, UnitOutcome
from normlab.experiments.plan import DEFAULT_MAX_STACK, Unit, plan
from normlab.experiments.progress import Observer
from normlab.spec.config import RunConfig
from normlab.store.db import Store
from normlab.store.leases import Owner
from normlab.types import FINISHED

POLL_SECONDS = 1.0  # how often units held by other drivers are looked at again
PROGRESS_SECONDS = 2.0  # how often a unit's steps so far are recorded (a live report's)


@dataclass
class Tally:
    """What one driver did: runs it trained (and how many diverged), runs other drivers
    finished meanwhile, and the units that failed."""

    trained: int = 0
    diverged: int = 0
    by_others: int = 0
    failures: list[str] = field(default_factory=list)


def _key(unit: Unit) -> tuple[str, ...]:
    return tuple(unit.run_ids)


@dataclass
class Driver:
    """Trains ``units`` on ``executor`` under ``owner``'s leases of ``seconds``;
    ``pending`` replans what the study still needs from the database."""

    store: Store
    executor: Executor
    owner: Owner
    seconds: float
    pending: Callable[[], list[Unit]]
    observer: Observer
    tally: Tally = field(default_factory=Tally)
    _tried: set[tuple[str, ...]] = field(default_factory=set)
    _steps: dict[tuple[str, ...], int] = field(default_factory=dict)  # taken, per unit
    _noted: dict[tuple[str, ...], float] = field(default_factory=dict)  # when recorded

    def run(self, units: Sequence[Unit]) -> Tally:
        """Train ``units`` (and whatever other drivers leave behind) to the end."""
        environment = self.executor.environment()
        claimed = 0

        def claim(unit: Unit) -> bool:
            nonlocal claimed
            ids = unit.run_ids
            if not self.store.claim(ids, self.owner, self.seconds, environment, unit.chain):
                return False
            self._tried.add(_key(unit))
            claimed += 1
            return True

        waiting = False
        while units:
            claimed = 0
            for outcome in self.executor.run(units, claim, self._progress):
                self._record(outcome)
            left = [u for u in self.pending() if _key(u) not in self._tried]
            self._others_finished(units, left)
            if left and not claimed:  # all held by other drivers: let them move
                if not waiting:
                    self.observer.message(f"units another process holds, waited for: {len(left)}")
                waiting = True
                time.sleep(POLL_SECONDS)
            units = left
        return self.tally

    def _progress(self, unit: Unit, steps: int) -> None:
        self.observer.advanced(steps, unit.work * steps / max(unit.steps, 1))
        key = _key(unit)
        done = self._steps[key] = self._steps.get(key, 0) + steps
        now = time.monotonic()
        if now - self._noted.get(key, -PROGRESS_SECONDS) < PROGRESS_SECONDS:
            return
        self._noted[key] = now
        # for whoever watches (normlab report --live); a locked or full database is
        # left to the heartbeat and the saving of results to report
        with contextlib.suppress(sqlite3.Error):
            self.store.record_progress(self.owner, unit.run_steps(done))

    def _others_finished(self, before: Sequence[Unit], after: Sequence[Unit]) -> None:
        """Count, and show as progress, the units other drivers finished."""
        still = {rid for u in after for rid in u.run_ids}
        gone = [u for u in before if _key(u) not in self._tried and not still & set(u.run_ids)]
        if gone:
            runs = sum(len(u.configs) for u in gone)
            self.tally.by_others += runs
            self.observer.advanced(sum(u.steps for u in gone), sum(u.work for u in gone))
            self.observer.message(f"runs finished by another process: {runs}")

    def _record(self, outcome: UnitOutcome) -> None:
        """Save a unit's results, or record its failure (its runs will be redone)."""
        unit = outcome.unit
        if outcome.results is None:
            self.store.mark_failed(unit.run_ids, outcome.error or "unknown error")
            self.tally.failures.append(f"runs {', '.join(unit.run_ids)}: {outcome.error}")
            self.observer.message(f"failed: {outcome.error}")
            return
        results = list(zip(unit.run_ids, outcome.results, strict=True))
        if not self.store.save_results(self.owner, results):
            # another driver took the lease over (this one stalled past it): its copy counts
            self.observer.message(f"lease lost on runs {', '.join(unit.run_ids)}; not saved")
            return
        self.tally.trained += len(results)
        self.tally.diverged += sum(r.diverged for r in outcome.results)
        # a stack that stopped at its validation plateau: the steps it did not take
        untaken = unit.steps - self._steps.get(_key(unit), 0)
        if untaken > 0:
            self.observer.advanced(untaken, unit.work * untaken / max(unit.steps, 1))


def pending_units(
    store: Store,
    configs: Sequence[RunConfig],
    max_stack: int = DEFAULT_MAX_STACK,
    device_type: str = "cpu",
) -> tuple[list[Unit], int]:
    """Units still to train on a ``device_type`` device (a chain is redone whole if any
    leg is unfinished) and the number of runs already finished."""
    status = store.statuses(c.run_id for c in configs)
    done = {rid for rid, s in status.items() if s in FINISHED}
    chained = {c.run_id for c in configs if c.carried_from} | {
        c.carried_from for c in configs if c.carried_from
    }
    todo = [c for c in configs if c.run_id not in done or c.run_id in chained]
    units = [u for u in plan(todo, max_stack, device_type) if not set(u.run_ids) <= done]
    pending = {rid for u in units for rid in u.run_ids}
    return units, sum(1 for c in configs if c.run_id not in pending)
