"""Time to target: when a run's validation accuracy first reaches each target."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Reached:
    """Where a target was first reached: training step, epoch (fractional) and seconds."""

    step: int
    epoch: float
    seconds: float


def time_to_target(
    points: Iterable[tuple[int, float, float, float]], targets: Sequence[float]
) -> dict[float, Reached | None]:
    """For evaluation points (step, epoch, seconds, val_acc) in time order, the first
    point at which val_acc >= each target; None for a target never reached (a censored
    outcome: rank-based comparisons count it as the slowest)."""
    found: dict[float, Reached | None] = dict.fromkeys(targets)
    for step, epoch, seconds, acc in points:
        if not math.isfinite(acc):
            continue
        for t in targets:
            if found[t] is None and acc >= t:
                found[t] = Reached(step, epoch, seconds)
    return found
