"""Grouping runs into units that train together (what they will cost: ``costs``).

A *cohort* is a set of runs that differ only in seed and learning rate; up to
``max_stack`` of them train as one stack. Runs carried from one another (the notebook
as written) form a *chain* trained one leg after another on one model. What a member
costs (parameters, memory, arithmetic) comes from its model family.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

from normlab.spec.config import RunConfig

DEFAULT_MAX_STACK = 16
MEMORY_BUDGET = 2 << 30  # bytes a stack may use by default: training state + activations
# What a training step costs besides its forward and backward arithmetic, counted in
# the floating-point operations that would take as long: each parameter's passes
# through memory (weights read, gradients written, Adam's update) about 375, and the
# step's fixed work (Python, autograd, small ops) about 1e8. Fitted to stacks of 5
# seed networks at B = 32-256 on one thread here (AMD EPYC, issue 13: 6 ms a step
# whatever B, plus 0.1 ms per example); ``Unit.work`` weighs units with them.
PARAMETER_FLOPS = 375
STEP_FLOPS = 100_000_000


@dataclass(frozen=True)
class Unit:
    """Runs trained in one go: a stack of one cohort, or a chain of carried legs."""

    configs: tuple[RunConfig, ...]
    chain: bool = False

    @property
    def run_ids(self) -> list[str]:
        return [c.run_id for c in self.configs]

    @property
    def _legs(self) -> tuple[RunConfig, ...]:
        """What is trained one after another: a chain's legs, or a stack's shared shape."""
        return self.configs if self.chain else self.configs[:1]

    @property
    def steps(self) -> int:
        """Optimizer steps the unit takes (the progress bar's unit)."""
        return sum(c.epochs * c.steps_per_epoch for c in self._legs)

    def run_steps(self, steps: int) -> dict[str, int]:
        """The steps each run has taken when the unit has taken ``steps``: a stack's
        members all of them, a chain's legs one after another."""
        if not self.chain:
            return dict.fromkeys(self.run_ids, steps)
        out, before = {}, 0
        for c in self.configs:
            leg = c.epochs * c.steps_per_epoch
            out[c.run_id] = min(max(steps - before, 0), leg)
            before += leg
        return out

    @functools.cached_property
    def work(self) -> float:
        """What the unit costs, roughly, in floating-point operations: its steps'
        forward and backward passes, passes over the parameters and fixed work, and its
        evaluations. Executors that train several units at once start the costliest
        first, so that no long unit is left to run alone at the end; the progress bar
        counts it, so that its ETA holds across units of different costs."""
        members = 1 if self.chain else len(self.configs)
        total = 0.0
        for c in self._legs:
            spec = c.model_spec()
            flops, params = c.family.forward_flops(spec), c.family.member_parameters(spec)
            step = members * (3 * c.batch_size * flops + PARAMETER_FLOPS * params)
            held_out = members * (c.val_size + c.source.test_size) * flops
            total += c.epochs * (c.steps_per_epoch * (step + STEP_FLOPS) + held_out)
        return total


def choose_stack_size(
    member_parameters: int,
    member_bytes: int,
    n_runs: int,
    max_stack: int = DEFAULT_MAX_STACK,
    memory_budget: int | None = None,
    device_type: str = "cpu",
    cpu_stack_parameters: int = 3_000_000,
) -> int:
    """How many of ``n_runs`` like runs to train per stack.

    As many as stacking pays for (on a CPU about ``cpu_stack_parameters`` parameters in
    the whole stack, the family's figure; at most ``max_stack`` everywhere) and memory
    allows (``memory_budget``, default the smaller of 2 GiB and a quarter of physical
    memory, 2 GiB where the system does not say how much it has), then evened out: 20
    runs under a cap of 16 train as two stacks of 10, not 16 and 4.
    """
    if memory_budget is None:
        physical = physical_memory()
        memory_budget = MEMORY_BUDGET if physical is None else min(MEMORY_BUDGET, physical // 4)
    fits = max(1, memory_budget // member_bytes)
    pays = cpu_stack_parameters // member_parameters if device_type == "cpu" else max_stack
    cap = max(1, min(max_stack, fits, pays, n_runs))
    stacks = math.ceil(n_runs / cap)
    return math.ceil(n_runs / stacks)


def physical_memory() -> int | None:
    """This machine's memory in bytes, or None where the system does not say (os.sysconf
    is POSIX only: Windows has none)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def stack_size(
    config: RunConfig, n_runs: int, max_stack: int = DEFAULT_MAX_STACK, device_type: str = "cpu"
) -> int:
    """``choose_stack_size`` for ``n_runs`` runs like ``config``, from its family's costs."""
    family, spec = config.family, config.model_spec()
    return choose_stack_size(
        family.member_parameters(spec),
        family.member_bytes(spec, config.batch_size),
        n_runs,
        max_stack,
        device_type=device_type,
        cpu_stack_parameters=family.cpu_stack_parameters,
    )


def plan(
    configs: Sequence[RunConfig], max_stack: int = DEFAULT_MAX_STACK, device_type: str = "cpu"
) -> list[Unit]:
    """Group ``configs`` into chains and stacks of at most ``max_stack`` members, each
    cohort's stack size chosen by ``stack_size`` for ``device_type``."""
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
        size = stack_size(members[0], len(members), max_stack, device_type)
        for start in range(0, len(members), size):
            units.append(Unit(tuple(members[start : start + size])))
    return units
