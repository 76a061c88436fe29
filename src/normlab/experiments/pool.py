"""The pool executor: several units at once on this machine, each in a worker process of
its own with ``threads`` threads (``--executor pool``).

On a CPU, small matrix products split over threads spend much of their time waiting for
each other; two units trained at once with one thread each did more work per second
than one unit after another with two threads (BENCHMARKS.md, issue 13). Workers are
started once per study (``spawn``: a fresh interpreter, no state copied from the
driver), read each dataset once, and report their steps through a pipe. The driver
claims a unit just before handing it to a worker and is the only writer to the
database. A worker that dies (killed, out of memory) fails its unit with the reason
and the pool is started again for the rest.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import torch

from normlab import runtime
from normlab.data.prepare import Splits
from normlab.experiments.executors import UNIT_ERRORS, Progress, UnitOutcome, in_flight
from normlab.experiments.plan import Unit
from normlab.experiments.runner import DataCache, train_unit
from normlab.spec.config import RunConfig
from normlab.types import RunResult

_WAIT_SECONDS = 0.5  # how often the driver collects progress while units train

# A worker process's own state, set by _start when the pool starts it.
_worker: dict[str, object] = {}


def _start(threads: int, data_dir: Path | str | None, device: str, steps) -> None:
    runtime.configure(threads)
    _worker.update(data=DataCache(data_dir, torch.device(device)), steps=steps)


def _warm(config: RunConfig) -> None:
    """A worker's first task: read ``config``'s data while the driver still plans (a
    failure shows again, with its reason, when a unit needs the data)."""
    with contextlib.suppress(UNIT_ERRORS):
        _worker["data"].splits(config)


def _train(unit: Unit) -> tuple[list[RunResult] | None, str | None]:
    """A worker's task: train ``unit``, reporting its steps under its first run's id;
    its results, or the error it raised."""
    key, queue_ = unit.run_ids[0], _worker["steps"]
    try:
        return train_unit(unit, _worker["data"], lambda steps: queue_.put((key, steps))), None
    except UNIT_ERRORS as err:
        return None, f"{type(err).__name__}: {err}"


class PoolExecutor:
    """Trains ``workers`` units at once (default: this machine's cores over ``threads``)
    in worker processes of ``threads`` threads each, on ``device``."""

    def __init__(
        self,
        device: torch.device,
        data_dir: Path | str | None = None,
        threads: int = 1,
        workers: int | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.device, self.data_dir, self.threads = device, data_dir, threads
        self.workers = workers or max(1, (os.cpu_count() or 1) // threads)
        self.local = DataCache(data_dir, device, log=log)
        self._context = multiprocessing.get_context("spawn")
        self._steps = self._context.SimpleQueue()
        self._pool: ProcessPoolExecutor | None = None

    def environment(self) -> dict[str, object]:
        env = runtime.environment(self.device)
        env.update(executor="pool", workers=self.workers, threads=self.threads)
        return env

    def prepare(self, config: RunConfig) -> Splits:
        """Start the workers reading ``config``'s data, and read it here too: a missing
        file fails before any unit is handed out. Starting a worker (a fresh
        interpreter importing torch) takes seconds; this overlaps it with the driver's
        own reading and planning."""
        if self._pool is None:
            pool = self._started()
            for _ in range(self.workers):
                pool.submit(_warm, config)
        return self.local.splits(config)

    def _started(self) -> ProcessPoolExecutor:
        if self._pool is None:
            # Written straight into the pipe (no feeder thread, as a Queue has): a unit's
            # last steps are there before its result, so the bar ends at every step. A
            # new pipe per pool: a worker killed while writing leaves its lock taken.
            self._steps = self._context.SimpleQueue()
            self._pool = ProcessPoolExecutor(
                self.workers, mp_context=self._context, initializer=_start,
                initargs=(self.threads, self.data_dir, self.device.type, self._steps),
            )  # fmt: skip
        return self._pool

    def run(
        self,
        units: Sequence[Unit],
        claim: Callable[[Unit], bool],
        progress: Progress | None = None,
    ) -> Iterator[UnitOutcome]:
        by_key = {unit.run_ids[0]: unit for unit in units}

        def landed(futures: list[Future]) -> list[Future]:
            done, _ = wait(futures, timeout=_WAIT_SECONDS, return_when=FIRST_COMPLETED)
            self._report(by_key, progress)
            return list(done)

        def submit(unit: Unit) -> Future:
            return self._started().submit(_train, unit)

        for unit, future in in_flight(units, claim, self.workers, submit, landed,
                                      Future.cancel):  # fmt: skip
            yield self._outcome(unit, future)
        self._report(by_key, progress)

    def _report(self, units: dict[str, Unit], progress: Progress | None) -> None:
        """Hand the steps the workers reported to ``progress``, unit by unit."""
        steps: dict[str, int] = {}
        while not self._steps.empty():
            key, n = self._steps.get()
            steps[key] = steps.get(key, 0) + n
        if progress is not None:
            for key, n in steps.items():
                if key in units:  # not a unit an earlier, interrupted run left behind
                    progress(units[key], n)

    def _outcome(self, unit: Unit, future: Future) -> UnitOutcome:
        try:
            results, error = future.result()
        except BrokenProcessPool as err:  # a worker died: this unit with it, maybe others
            self.close()
            return UnitOutcome(unit, error=f"a worker process died ({err})")
        return UnitOutcome(unit, results=results, error=error)

    def close(self) -> None:
        """Stop the worker processes (a later ``run`` starts new ones)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
