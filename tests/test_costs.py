"""The measured estimate of ``--dry-run``: kinds of unit timed once each, scaled to the
whole study and scheduled over the executor's slots, on real MNIST."""

from __future__ import annotations

from normlab.experiments.costs import estimate, leg_timing, makespan
from normlab.experiments.plan import Unit
from normlab.experiments.runner import DataCache
from normlab.spec.config import RunConfig


def test_units_are_scheduled_longest_first_on_the_slot_that_frees_first():
    assert makespan([3, 1, 1, 1], 1) == 6
    assert makespan([3, 1, 1, 1], 2) == 3  # 3 | 1+1+1
    assert makespan([2, 2, 2], 2) == 4
    assert makespan([5], 4) == 5 and makespan([], 2) == 0


def test_each_kind_of_unit_is_timed_once_and_scaled_to_its_epochs(data_root):
    import torch

    data = DataCache(data_root, torch.device("cpu"))
    one = RunConfig(hidden=(32,), epochs=1, batch_size=500, inputs="scaled")
    two = one.model_copy(update={"epochs": 2})
    timing = leg_timing(one, 1, data)  # measured once, then scaled to any length
    assert timing.per_step > 0  # 110 steps: the long training outlasts the short one
    assert timing.seconds(one) == 110 * timing.per_step + timing.epoch_end
    assert timing.seconds(two) == 2 * timing.seconds(one)
    seeds = [one.model_copy(update={"seed": s}) for s in range(4)]
    units = [Unit((c,)) for c in seeds] + [Unit(tuple(seeds[:2]))]
    timed = estimate(units, data, slots=2, startup=1.5)
    assert timed.kinds == 2  # one member and two members: two kinds, five units
    assert timed.slots == 2 and timed.seconds > 1.5 + timed.loading
