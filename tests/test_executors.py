"""The executors' shared loop and the choice of an executor by name."""

from __future__ import annotations

import pytest
import torch

from normlab.experiments.config import RunConfig
from normlab.experiments.executors import in_flight, make_executor
from normlab.experiments.plan import Unit


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


def test_an_executor_is_chosen_by_name_with_one_line_errors():
    cpu = torch.device("cpu")
    assert make_executor("pool", cpu).workers >= 1
    with pytest.raises(ValueError, match="executor 'dask' is not one of local, pool, ray"):
        make_executor("dask", cpu)
    with pytest.raises(ValueError, match="address 'head:6379' needs the ray executor"):
        make_executor("local", cpu, address="head:6379")
