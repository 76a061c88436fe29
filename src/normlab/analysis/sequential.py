"""Claims that decide themselves: a group-sequential design whose error rates hold
however the looks fall.

A design is fixed before any data by its cap (the most seeds per arm): it looks at
n₁ = 4 seeds, then adds half as many again each round (4, 6, 9, 14, 20 for a cap of
20), always ending at the cap. Each look spends part of alpha by the power family
α(t) = α·t² of the information fraction t = n / cap (Kim & DeMets 1987), so early looks,
at few seeds, spend little. At look j the claim is judged by the usual rule
(``analysis.verdict``) at level α_j = α(t_j) - α(t_{j-1}): Holm's correction at α_j and
intervals of confidence 1 - α_j. Since Σ α_j = α, by the union bound every look's
intervals hold together with probability at least 1 - α (Jennison & Turnbull's
repeated confidence intervals), so a decision reached at any look is as valid as one
from a fixed design, and a comparison may stop at the look it is decided. No joint
distribution of the looks is assumed, which keeps the design valid for rank tests and
censored outcomes alike; the price is some power against an exact boundary.

A comparison is *decided* once it reads for, against or negligible; its first decided
reading stands. A claim stops when all its comparisons are decided ("decided"), or at
the cap ("cap"), and its verdict follows from the readings as in a fixed design.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from normlab.analysis.verdict import Reading

T = TypeVar("T")
FIRST = 4
RHO = 2.0  # the spending function's power: alpha·t^RHO


@dataclass(frozen=True)
class Design:
    """The looks of a sequential design with at most ``cap`` seeds per arm."""

    cap: int
    alpha: float = 0.05

    def __post_init__(self) -> None:
        if self.cap < FIRST:
            raise ValueError(f"the cap must be at least {FIRST} seeds, got {self.cap}")

    @property
    def seeds(self) -> tuple[int, ...]:
        """The seeds per arm at each look."""
        looks = [FIRST]
        while looks[-1] < self.cap:
            looks.append(min(self.cap, looks[-1] + math.ceil(looks[-1] / 2)))
        return tuple(looks)

    def spent(self, n: int) -> float:
        """Alpha spent by the look at ``n`` seeds and all before it."""
        return self.alpha * min(1.0, n / self.cap) ** RHO

    @property
    def levels(self) -> tuple[float, ...]:
        """The level each look is judged at (they sum to alpha)."""
        seeds = self.seeds
        return tuple(
            self.spent(n) - (self.spent(seeds[j - 1]) if j else 0.0) for j, n in enumerate(seeds)
        )


def decided(reading: Reading | None) -> bool:
    """Whether a comparison's reading settles it."""
    return reading not in (None, Reading.OPEN)


@dataclass(frozen=True)
class Replayed(Generic[T]):
    """One look of a replayed design: its seeds and level, what the judge made of them,
    and every comparison's reading so far (first decided readings stand)."""

    seeds: int
    level: float
    judged: T
    readings: dict[str, Reading]
    stopped: str  # "decided", "cap", or "" when the design goes on


def replay(
    design: Design, judge_at: Callable[[int, float], tuple[T, dict[str, Reading]] | None]
) -> list[Replayed[T]]:
    """The design's looks as far as the data go: ``judge_at(seeds, level)`` judges the
    first ``seeds`` seeds at ``level`` and gives what it made of them with each
    comparison's reading by label, or None when those seeds are not all there yet."""
    looks: list[Replayed[T]] = []
    readings: dict[str, Reading] = {}
    for n, level in zip(design.seeds, design.levels, strict=True):
        got = judge_at(n, level)
        if got is None:
            break
        judged, now = got
        readings = {k: readings[k] if decided(readings.get(k)) else r for k, r in now.items()}
        stop = "decided" if all(decided(r) for r in readings.values()) else ""
        stop = stop or ("cap" if n == design.cap else "")
        looks.append(Replayed(n, level, judged, readings, stop))
        if looks[-1].stopped:
            break
    return looks
