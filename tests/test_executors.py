"""The executors' shared loop and the choice of an executor by name."""

from __future__ import annotations

import pytest
import torch

from normlab.app.api import run_study
from normlab.experiments.executors import in_flight, make_executor
from normlab.experiments.plan import Unit
from normlab.experiments.progress import Observer
from normlab.spec.config import RunConfig
from normlab.spec.study import StudySpec


def _units(n: int) -> list[Unit]:
    return [Unit((RunConfig(seed=s),)) for s in range(n)]


def test_units_fly_claimed_within_room_and_are_cancelled_when_the_caller_stops():
    units, flying, most, cancelled = _units(5), set(), 0, []

    def submit(unit: Unit) -> int:
        nonlocal most
        flying.add(unit.configs[0].seed)
        most = max(most, len(flying))
        return unit.configs[0].seed

    def landed(handles: list[int]) -> list[int]:
        flying.discard(min(handles))
        return [min(handles)]

    taken = [
        u.configs[0].seed
        for u, _ in in_flight(
            units, lambda u: u.configs[0].seed != 2, 2, submit, landed, cancelled.append
        )
    ]
    assert taken == [0, 1, 3, 4] and most == 2  # 2 held elsewhere: skipped, never submitted
    flight = in_flight(_units(5), lambda u: True, 3, submit, landed, cancelled.append)
    next(flight)
    flight.close()  # the driver stopped (its database failed): the rest are cancelled
    assert sorted(cancelled) == [1, 2]


def test_units_start_costliest_first():
    def unit(batch: int, epochs: int = 1, k: int = 5) -> Unit:
        return Unit(tuple(RunConfig(seed=s, batch_size=batch, epochs=epochs) for s in range(k)))

    # per epoch a small batch costs more than a large one (more steps, each with the
    # optimizer's pass and the step's fixed work); more epochs or members cost more
    units = [unit(256), unit(32), unit(64), unit(256, epochs=3), unit(32, k=1)]
    assert units[1].work > units[2].work > units[0].work > units[4].work
    started = []

    def submit(u: Unit) -> Unit:
        started.append(u)
        return u

    list(in_flight(units, lambda u: True, 2, submit, lambda h: h[:1], lambda h: None))
    assert started == [units[3], units[1], units[2], units[0], units[4]]


def test_an_executor_is_chosen_by_name_with_one_line_errors():
    cpu = torch.device("cpu")
    assert make_executor("pool", cpu).workers >= 1
    with pytest.raises(ValueError, match="executor 'dask' is not one of local, pool, ray"):
        make_executor("dask", cpu)
    with pytest.raises(ValueError, match="address 'head:6379' needs the ray executor"):
        make_executor("local", cpu, address="head:6379")


class _Counted(Observer):
    def __init__(self) -> None:
        self.planned_steps = self.planned_work = self.steps = self.work = 0.0

    def planned(self, study, runs, finished, units) -> None:
        self.planned_steps = sum(u.steps for u in units)
        self.planned_work = sum(u.work for u in units)

    def advanced(self, steps: int, work: float) -> None:
        self.steps += steps
        self.work += work


@pytest.mark.parametrize("executor", ["local", "pool"])
def test_progress_counts_every_planned_step_and_its_work(executor, tmp_path, data_root):
    spec = StudySpec(name="progress", seeds=2,
                     fixed={"hidden": [16], "epochs": 1, "inputs": "scaled", "val_size": 50000},
                     grid={"batch_size": [500, 2500]})  # fmt: skip
    seen = _Counted()
    report = run_study(spec, db=tmp_path / "p.db", data_dir=data_root, executor=executor,
                       observer=seen)  # fmt: skip
    assert report.trained == 4 and not report.failures
    assert seen.steps == seen.planned_steps == 20 + 4  # 10,000 images in batches of 500, 2500
    assert seen.work == pytest.approx(seen.planned_work) and seen.work > 0
