"""Grouping runs into units that train together, and a rough time estimate.

A *cohort* is a set of runs that differ only in seed and learning rate; up to
``max_stack`` of them train as one stack. Runs carried from one another (the notebook
as written) form a *chain* trained one leg after another on one model.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

from normlab.studies.config import RunConfig
from normlab.train.loop import EVAL_CHUNK

# From the cost curves (BENCHMARKS.md, B=128, per model-epoch): with 100k parameters per
# member (width 128) stacking pays up to K=16-32 (0.78 s alone, 0.27 at K=16); with 400k
# (width 512) it levels off at K=4-8 (1.31 -> 0.84) and K=32 is worse; with 1.6M (width
# 2048) one member alone is fastest (3.2 s, 4.6-5.2 at K=8-32). Stacking pays while the
# stack holds about 3M parameters; past that the stacked weights and Adam state no longer
# stay in cache and the bigger matmuls gain nothing. On a GPU (an H100, measured the same
# way) stacking paid up to K=32 at every width, because a step there costs launches more
# than arithmetic, so no parameter cap applies on CUDA devices.
DEFAULT_MAX_STACK = 16
STACK_PARAMETERS = 3_000_000
MEMORY_BUDGET = 2 << 30  # bytes a stack may use by default: training state + activations
_N_INPUTS = 784  # MNIST and Fashion-MNIST

# Rough costs on the 2-core CPU normlab was calibrated on (benchmarks/run.py, see
# BENCHMARKS.md): effective GEMM throughput with the fused elementwise work folded in,
# Adam's memory traffic, and the fixed cost of one step (Python, dispatch, kernels).
_FLOPS_PER_S = 150e9
_ADAM_BYTES_PER_S = 50e9
_STEP_OVERHEAD_S = 1e-3
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


def member_bytes(n_inputs: int, hidden: Sequence[int], batch_size: int, n_classes: int = 10) -> int:
    """Memory one member of a stack needs while training, in bytes.

    Weights, gradients and Adam's two moments (4 float32 copies of the parameters), the
    step's activations (input batch; per hidden layer pre-activation, output and
    gradients) and the evaluation chunk's activations.
    """
    widths = (n_inputs, *hidden, n_classes)
    params = sum(a * b + b for a, b in itertools.pairwise(widths))
    activations = batch_size * (n_inputs + 4 * sum(hidden) + 3 * n_classes)
    evaluation = EVAL_CHUNK * (sum(hidden) + n_classes)
    return 4 * (4 * params + activations + evaluation)


def choose_stack_size(
    n_inputs: int,
    hidden: Sequence[int],
    batch_size: int,
    n_runs: int,
    max_stack: int = DEFAULT_MAX_STACK,
    memory_budget: int | None = None,
    device_type: str = "cpu",
) -> int:
    """How many of ``n_runs`` like runs to train per stack.

    As many as stacking pays for (on a CPU about ``STACK_PARAMETERS`` parameters in the
    whole stack; at most ``max_stack`` everywhere) and memory allows (``memory_budget``, default the
    smaller of 2 GiB and a quarter of physical memory), then evened out: 20 runs under a
    cap of 16 train as two stacks of 10, not 16 and 4.
    """
    if memory_budget is None:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        memory_budget = min(MEMORY_BUDGET, physical // 4)
    fits = max(1, memory_budget // member_bytes(n_inputs, hidden, batch_size))
    widths = (n_inputs, *hidden, 10)
    member_parameters = sum(a * b + b for a, b in itertools.pairwise(widths))
    pays = STACK_PARAMETERS // member_parameters if device_type == "cpu" else max_stack
    cap = max(1, min(max_stack, fits, pays, n_runs))
    stacks = math.ceil(n_runs / cap)
    return math.ceil(n_runs / stacks)


def plan(
    configs: Sequence[RunConfig], max_stack: int = DEFAULT_MAX_STACK, device_type: str = "cpu"
) -> list[Unit]:
    """Group ``configs`` into chains and stacks of at most ``max_stack`` members, each
    cohort's stack size chosen by ``choose_stack_size`` for ``device_type``."""
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
        c = members[0]
        size = choose_stack_size(
            _N_INPUTS, c.hidden, c.batch_size, len(members), max_stack, device_type=device_type
        )
        for start in range(0, len(members), size):
            units.append(Unit(tuple(members[start : start + size])))
    return units


def estimate_seconds(units: Sequence[Unit]) -> float:
    """A rough wall-time estimate for ``units`` (within a factor of ~2 on a 2-core CPU)."""
    total = 0.0
    for unit in units:
        legs = unit.configs if unit.chain else unit.configs[:1]
        k = 1 if unit.chain else len(unit.configs)
        for c in legs:
            widths = (_N_INPUTS, *c.hidden, 10)
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
