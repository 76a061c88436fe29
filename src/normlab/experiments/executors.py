"""Executors: where a study's units train. The driver (``api.run_study``) hands them the
units and records what comes back; an executor never writes to the database.

``LocalExecutor`` trains the units one after another in this process. Another executor
(a pool, a cluster) implements the same ``run``: ask ``claim`` for each unit just before
it starts (and skip it when the answer is no: another process holds it), report each
unit's steps to ``progress`` as they are taken, yield each started unit's outcome as it
ends, in any order.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

import torch

from normlab import runtime
from normlab.data.download import DownloadError
from normlab.data.idx import IdxError
from normlab.data.prepare import Splits
from normlab.errors import InputError
from normlab.experiments.plan import Unit
from normlab.experiments.runner import DataCache, train_unit
from normlab.spec.config import RunConfig
from normlab.types import RunResult

H = TypeVar("H")  # an executor's handle on a unit in flight (a future, an object ref)
Progress = Callable[[Unit, int], None]  # a unit took this many more optimizer steps

# What a unit's failure can be: its data cannot be read, or its training raised.
UNIT_ERRORS = (ValueError, RuntimeError, OSError, DownloadError, IdxError)


@dataclass(frozen=True)
class UnitOutcome:
    """A unit's results (one per run, in ``unit.configs`` order) or the error it raised."""

    unit: Unit
    results: list[RunResult] | None = None
    error: str | None = None


class Executor(Protocol):
    """Trains units and reports on them; ``environment`` describes where."""

    def environment(self) -> dict[str, object]: ...

    def prepare(self, config: RunConfig) -> None:
        """Load what ``config`` trains on now (bad input fails here, before training)."""

    def run(
        self,
        units: Sequence[Unit],
        claim: Callable[[Unit], bool],
        progress: Progress | None = None,
    ) -> Iterator[UnitOutcome]: ...

    def close(self) -> None:
        """Give back what the executor started (a Ray instance); it is not used again."""


def in_flight(
    units: Sequence[Unit],
    claim: Callable[[Unit], bool],
    room: int,
    submit: Callable[[Unit], H],
    landed: Callable[[list[H]], list[H]],
    cancel: Callable[[H], None],
) -> Iterator[tuple[Unit, H]]:
    """Keep up to ``room`` claimed units in flight, the costliest first (``Unit.work``:
    the last to start are short, so the slots finish together); ``submit`` starts one
    and returns its handle, ``landed`` waits a little and returns the handles done.
    Yield each unit with its handle as it lands. Units still in flight when the caller
    stops are cancelled: nobody would save them. What the pool and the Ray executors
    share."""
    waiting, flying = sorted(units, key=lambda u: -u.work), {}
    try:
        while waiting or flying:
            while waiting and len(flying) < room:
                unit = waiting.pop(0)
                if claim(unit):
                    flying[submit(unit)] = unit
            if not flying:
                break
            for handle in landed(list(flying)):
                yield flying.pop(handle), handle
    finally:
        for handle in flying:
            cancel(handle)


class LocalExecutor:
    """Trains units in this process, one after another, on ``device``."""

    def __init__(
        self,
        device: torch.device,
        data_dir: Path | str | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.device = device
        self.data = DataCache(data_dir, device, log=log)

    def environment(self) -> dict[str, object]:
        return runtime.environment(self.device)

    def prepare(self, config: RunConfig) -> Splits:
        return self.data.splits(config)

    def run(
        self,
        units: Sequence[Unit],
        claim: Callable[[Unit], bool],
        progress: Progress | None = None,
    ) -> Iterator[UnitOutcome]:
        for unit in units:
            if not claim(unit):
                continue
            steps = None if progress is None else functools.partial(progress, unit)
            try:
                results = train_unit(unit, self.data, steps)
            except UNIT_ERRORS as err:
                yield UnitOutcome(unit, error=f"{type(err).__name__}: {err}")
                continue
            yield UnitOutcome(unit, results=results)

    def close(self) -> None:
        pass


EXECUTORS = ("local", "pool", "ray")


def make_executor(
    name: str,
    device: torch.device,
    data_dir: Path | str | None = None,
    address: str | None = None,
    threads: int | None = None,
    log: Callable[[str], None] | None = None,
) -> Executor:
    """The executor called ``name``: ``local`` (this process), ``pool`` (worker
    processes on this machine, as many as its cores over ``threads``) or ``ray`` (a Ray
    instance started here, or the cluster at ``address``); ``threads`` per unit, 1 by
    default for the pool and Ray. InputError names a bad choice or a missing Ray."""
    if name not in EXECUTORS:
        raise InputError(f"executor {name!r} is not one of {', '.join(EXECUTORS)}", "executor")
    if name != "ray" and address is not None:
        raise InputError(f"address {address!r} needs the ray executor", "address")
    if name == "local":
        return LocalExecutor(device, data_dir, log=log)
    if name == "pool":
        from normlab.experiments.pool import PoolExecutor

        return PoolExecutor(device, data_dir, threads or 1, log=log)
    try:
        from normlab.experiments.cluster import RayExecutor
    except ImportError:
        needs = 'the ray executor needs Ray: pip install "normlab[ray]"'
        raise InputError(needs, "executor") from None
    return RayExecutor(device, data_dir, address, threads or 1, log=log)
