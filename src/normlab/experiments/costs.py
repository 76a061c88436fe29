"""What a study will cost on this machine, measured rather than guessed: ``--dry-run``
trains each distinct kind of unit (model, batch size, stack size, instruments) for a few
steps on slices of its real data, twice, and scales the difference to the whole unit.

Two short trainings of ``_SHORT`` and ``_LONG`` batches (more, until the extra steps take
a quarter second) give the time of a step (their difference over the extra steps) and
the time of an epoch's end (what is left: mostly the evaluation of the sliced
validation and test splits, scaled to their full size).
A warm-up training first pays the one-time costs (compiling the fused kernels, a CUDA
graph's capture). Not counted: a GAN's judging of its samples, and process start-up.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from normlab.data.prepare import Split, Splits
from normlab.experiments.plan import Unit
from normlab.experiments.runner import DataCache, instruments
from normlab.runtime import synchronize
from normlab.spec.config import RunConfig
from normlab.train.loop import Schedule, train_stack
from normlab.train.optimizers import make_optimizer

_WARM, _SHORT, _LONG = 2, 3, 9  # batches per timed training (the long one grows, below)
_EXTRA_SECONDS = 0.25  # what the long training's extra steps must take at least
_EVAL_ROWS = 1024  # rows of the validation and of the test split evaluated when timing
# An executor's own start: worker processes importing torch and reading data (the pool),
# a local Ray instance besides (seen here: 5-15 s)
STARTUP_SECONDS = {"local": 0.0, "pool": 3.0, "ray": 10.0}


@dataclass(frozen=True)
class Estimate:
    """A study's measured time: ``seconds`` in all on ``slots`` units trained at once,
    ``loading`` of it reading data, after ``measuring`` seconds spent timing ``kinds``
    distinct kinds of unit."""

    seconds: float
    slots: int
    loading: float
    kinds: int
    measuring: float


def _slice(split: Split, rows: int) -> Split:
    return Split(split.x[:rows], split.y[:rows])


def _timed(config: RunConfig, k: int, splits: Splits, batches: int, data: DataCache) -> float:
    """Seconds to train ``k`` members like ``config`` for ``batches`` steps, one epoch,
    evaluating ``_EVAL_ROWS`` rows of each held-out split at its end."""
    sliced = Splits(_slice(splits.train, config.batch_size * batches),
                    _slice(splits.val, _EVAL_ROWS), _slice(splits.test, _EVAL_ROWS),
                    splits.inputs, splits.n_classes)  # fmt: skip
    device = splits.train.x.device
    model = config.family.build(config.model_spec(), list(range(k))).to(device)
    hooks = instruments(config, sliced, None, data, family_instruments=False)
    synchronize(device)
    start = time.perf_counter()
    train_stack(model, make_optimizer(config), sliced, list(range(k)), [config.lr] * k,
                Schedule(config.batch_size, 1, config.log_every), hooks)  # fmt: skip
    synchronize(device)
    return time.perf_counter() - start


@dataclass(frozen=True)
class LegTiming:
    """A kind of unit as measured: seconds per optimizer step and per epoch's end (its
    evaluation of the held-out splits, at their full size)."""

    per_step: float
    epoch_end: float

    def seconds(self, config: RunConfig) -> float:
        """The time of ``config``'s epochs (the measured kind at its length)."""
        return config.epochs * (config.steps_per_epoch * self.per_step + self.epoch_end)


def leg_timing(config: RunConfig, k: int, data: DataCache) -> LegTiming:
    """Measure ``k`` members like ``config``: a step and an epoch's end."""
    splits = data.splits(config)
    steps = len(splits.train) // config.batch_size
    if steps < _LONG:  # too little data to time apart: an epoch whole, as its steps
        _timed(config, k, splits, steps, data)
        return LegTiming(_timed(config, k, splits, steps, data) / steps, 0.0)
    _timed(config, k, splits, _WARM, data)
    short, n = _timed(config, k, splits, _SHORT, data), _LONG
    while True:  # lengthen the long training until the steps it adds outweigh the noise
        extra = _timed(config, k, splits, n, data) - short
        if extra >= _EXTRA_SECONDS or n == steps:
            break
        n = min(4 * n, steps)
    per_step = max(extra, 0.0) / (n - _SHORT)
    held_out = len(splits.val) + len(splits.test)
    sliced = min(len(splits.val), _EVAL_ROWS) + min(len(splits.test), _EVAL_ROWS)
    epoch_end = max(short - _SHORT * per_step, 0.0) * held_out / max(sliced, 1)
    return LegTiming(per_step, epoch_end)


def _kind(config: RunConfig, k: int) -> str:
    """What a timing depends on: a run's config less its seed and learning rate."""
    return f"{config.cohort_key}|{k}"


def estimate(
    units: Sequence[Unit],
    data: DataCache,
    slots: int = 1,
    log: Callable[[str], None] | None = None,
    startup: float = 0.0,
) -> Estimate:
    """Measure each kind of unit in ``units`` once and estimate the study's time when
    ``slots`` units train at once (longest first onto the least busy slot), after
    ``startup`` seconds of the executor's own."""
    begun = time.perf_counter()
    loading = 0.0
    for config in {(c.dataset, c.inputs, c.val_size, c.data_seed): c
                   for u in units for c in u.configs}.values():  # fmt: skip
        t = time.perf_counter()
        data.splits(config)
        loading += time.perf_counter() - t
    measured: dict[str, float] = {}
    costs = []
    for unit in units:
        legs = (
            [(c, 1) for c in unit.configs] if unit.chain else [(unit.configs[0], len(unit.configs))]
        )
        for config, k in legs:
            if _kind(config, k) not in measured:
                if log:
                    log(f"timing unit kind {len(measured) + 1}: {k} × {config.model} "
                        f"batch {config.batch_size}")  # fmt: skip
                measured[_kind(config, k)] = leg_timing(config, k, data).seconds(config)
        costs.append(sum(measured[_kind(c, k)] for c, k in legs))
    return Estimate(startup + makespan(costs, slots) + loading, max(1, slots), loading,
                    len(measured), time.perf_counter() - begun)  # fmt: skip


def makespan(costs: Sequence[float], slots: int) -> float:
    """Seconds until the last of ``costs`` ends when ``slots`` run at once, each next
    one (longest first) taken by the slot that frees first."""
    busy = [0.0] * max(1, slots)
    for cost in sorted(costs, reverse=True):
        busy[busy.index(min(busy))] += cost
    return max(busy)


@dataclass
class StudyPlan:
    """What ``study`` would do: its ``units``, the runs ``done`` already, and the
    measured ``estimate`` of the rest on ``executor`` (None when not measured)."""

    units: list[Unit]
    done: set[str]
    executor: str
    estimate: Estimate | None = None

    @property
    def pending(self) -> list[Unit]:
        return [u for u in self.units if not set(u.run_ids) <= self.done]
