"""Grouping runs into units that train together, and a rough time estimate.

A *cohort* is a set of runs that differ only in seed and learning rate; up to
``max_stack`` of them train as one stack. Runs carried from one another (the notebook
as written) form a *chain* trained one leg after another on one model.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from normlab.studies.config import RunConfig

DEFAULT_MAX_STACK = 16

# Rough costs on the 2-core CPU normlab was calibrated on (see BENCHMARKS.md when it
# exists): effective GEMM throughput, optimizer memory traffic and per-step overhead.
_FLOPS_PER_S = 60e9
_ADAM_BYTES_PER_S = 12e9
_STEP_OVERHEAD_S = 4e-4
_TRAIN_EXAMPLES = {"mnist": 60000, "fashion-mnist": 60000}
_TEST_EXAMPLES = 10000


@dataclass(frozen=True)
class Unit:
    """Runs trained in one go: a stack of one cohort, or a chain of carried legs."""

    configs: tuple[RunConfig, ...]
    chain: bool = False

    @property
    def run_ids(self) -> list[str]:
        return [c.run_id for c in self.configs]

    @property
    def steps(self) -> int:
        """Optimizer steps the unit takes (the progress bar's unit)."""
        legs = self.configs if self.chain else self.configs[:1]
        return sum(c.epochs * (_n_train(c) // c.batch_size) for c in legs)


def _n_train(c: RunConfig) -> int:
    return _TRAIN_EXAMPLES[c.dataset] - c.val_size


def plan(configs: Sequence[RunConfig], max_stack: int = DEFAULT_MAX_STACK) -> list[Unit]:
    """Group ``configs`` into chains and stacks of at most ``max_stack`` members."""
    if max_stack < 1:
        raise ValueError(f"max_stack must be >= 1, got {max_stack}")
    by_id = {c.run_id: c for c in configs}
    successor = {c.carried_from: c for c in configs if c.carried_from}
    units: list[Unit] = []
    cohorts: dict[str, list[RunConfig]] = {}
    for c in configs:
        if c.carried_from is None and c.run_id in successor:
            chain = [c]
            while chain[-1].run_id in successor:
                chain.append(successor[chain[-1].run_id])
            units.append(Unit(tuple(chain), chain=True))
        elif c.carried_from is None:
            cohorts.setdefault(c.cohort_key, []).append(c)
        elif c.carried_from not in by_id:
            raise ValueError(f"run {c.run_id} is carried from {c.carried_from}, not in this study")
    for members in cohorts.values():
        for start in range(0, len(members), max_stack):
            units.append(Unit(tuple(members[start : start + max_stack])))
    return units


def estimate_seconds(units: Sequence[Unit]) -> float:
    """A rough wall-time estimate for ``units`` (within a factor of ~2 on a 2-core CPU)."""
    total = 0.0
    for unit in units:
        legs = unit.configs if unit.chain else unit.configs[:1]
        k = 1 if unit.chain else len(unit.configs)
        for c in legs:
            widths = (784, *c.hidden, 10)
            params = sum(a * b + b for a, b in itertools.pairwise(widths))
            steps = _n_train(c) // c.batch_size
            per_step = (
                6 * params * c.batch_size * k / _FLOPS_PER_S
                + 28 * params * k / _ADAM_BYTES_PER_S
                + _STEP_OVERHEAD_S
            )
            evaluation = 2 * params * k * (c.val_size + _TEST_EXAMPLES) / _FLOPS_PER_S
            total += c.epochs * (steps * per_step + evaluation)
    return total
