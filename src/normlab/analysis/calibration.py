"""How well normlab's statistics keep their promises, by simulation: the coverage of
``stats.compare``'s 95% intervals and the error rates of ``verdict.decide``, at the
seed counts claims use, on data shaped like theirs.

A *scenario* is a distribution of per-seed noise, a number of seeds, paired or not, a
kind of outcome, and a true effect (0, the smallest effect that matters, or twice it).
Its data are drawn, compared and judged ``repeats`` times with one comparison and the
rule ``Rule(direction=+1, min_effect=MIN_EFFECT)``; what comes out:

- **coverage**: how often the interval holds the true effect (target 0.95; an exact
  rank interval that cannot reach 95% with so few seeds is unbounded and covers always);
- **supported**: how often the claim is supported (under no effect: its false-positive
  rate, at most alpha);
- **refuted**: how often it is refuted (at an effect of exactly ``MIN_EFFECT``: the
  false "no effect that matters", at most alpha).

The sequential design (``analysis.sequential``) is simulated under its own stopping
rule at its default cap: how often it ends supported under no effect, refuted at the
smallest effect that matters, and how many seeds it takes.

``python -m normlab.analysis.calibration`` prints the tables docs/STATISTICS.md shows
(``--repeats`` studies per scenario).
"""

from __future__ import annotations

import argparse
import math
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from normlab.analysis.sequential import Design, decided, replay
from normlab.analysis.stats import compare
from normlab.analysis.verdict import Reading, Rule, Verdict, conclude, decide, read

MIN_EFFECT = 0.5  # in units of the per-seed noise's scale
SEEDS = (3, 5, 8, 15)
EFFECTS = (0.0, 1.0, 2.0)  # in multiples of MIN_EFFECT
TEST_IMAGES = 10_000
ACCURACY = 0.95
COUNT_SEED_SD = 0.002  # accuracy's seed-to-seed spread, about what the claims measure


def _normal(rng: np.random.Generator, size: tuple[int, ...]) -> np.ndarray:
    return rng.normal(size=size)


def _t3(rng: np.random.Generator, size: tuple[int, ...]) -> np.ndarray:
    return rng.standard_t(3, size=size) / math.sqrt(3.0)  # unit variance


def _skewed(rng: np.random.Generator, size: tuple[int, ...]) -> np.ndarray:
    return (rng.gamma(2.0, size=size) - 2.0) / math.sqrt(2.0)  # skewness 1.4, unit variance


NOISE: dict[str, Callable[[np.random.Generator, tuple[int, ...]], np.ndarray]] = {
    "normal": _normal,
    "t3": _t3,
    "skewed": _skewed,
}


@dataclass(frozen=True)
class Scenario:
    """One simulated design: noise, seeds per arm, pairing, outcome kind, true effect."""

    noise: str  # "normal", "t3", "skewed" or "counts" (accuracies over 10,000 images)
    seeds: int
    paired: bool
    kind: str  # "continuous" or "ranked"
    effect: float  # the true effect in multiples of MIN_EFFECT

    @property
    def delta(self) -> float:
        """The true effect in the outcome's units."""
        return self.effect * MIN_EFFECT * (self.scale if self.noise == "counts" else 1.0)

    @property
    def scale(self) -> float:
        """The outcome's unit: 1 for the noise families, the per-seed standard deviation
        of a count accuracy (seed-to-seed training noise and test-set sampling)."""
        binomial = ACCURACY * (1 - ACCURACY) / TEST_IMAGES
        return math.sqrt(COUNT_SEED_SD**2 + binomial) if self.noise == "counts" else 1.0

    def draw(self, rng: np.random.Generator, repeats: int) -> tuple[np.ndarray, np.ndarray]:
        """``repeats`` studies' arm and baseline values, each [repeats, seeds]."""
        size = (repeats, self.seeds)
        if self.noise == "counts":
            p_arm = ACCURACY + self.delta + rng.normal(0, COUNT_SEED_SD, size)
            p_base = ACCURACY + rng.normal(0, COUNT_SEED_SD, size)
            arm = rng.binomial(TEST_IMAGES, np.clip(p_arm, 0, 1)) / TEST_IMAGES
            return arm, rng.binomial(TEST_IMAGES, np.clip(p_base, 0, 1)) / TEST_IMAGES
        noise = NOISE[self.noise]
        # Continuous outcomes: the arm is less noisy than its baseline (as BN's often
        # is), so paired differences of skewed noise stay skewed. Ranked outcomes: the
        # same noise in both arms, the shift model their rank tests assume.
        arm_scale = 0.5 if self.kind == "continuous" else 1.0
        shared = rng.normal(0, 1, size) if self.paired else 0.0  # what a seed fixes
        arm = shared + self.delta + arm_scale * noise(rng, size)
        return arm, shared + noise(rng, size)


def scenarios(seeds: Sequence[int] = SEEDS) -> Iterator[Scenario]:
    """Every scenario of a calibration table: each noise, number of ``seeds`` (the
    sequential table: its cap), design, outcome kind and effect."""
    for noise in (*NOISE, "counts"):
        for n in seeds:
            for paired in (True, False):
                for kind in ("continuous", "ranked"):
                    for effect in EFFECTS:
                        yield Scenario(noise, n, paired, kind, effect)


@dataclass(frozen=True)
class Rates:
    """What one scenario's simulation measured."""

    scenario: Scenario
    repeats: int
    coverage: float
    supported: float
    refuted: float


def run(scenario: Scenario, repeats: int, seed: int = 0) -> Rates:
    """Simulate ``scenario`` ``repeats`` times (a fixed stream per scenario)."""
    rng = np.random.default_rng([seed, zlib.crc32(repr(scenario).encode())])
    arms, bases = scenario.draw(rng, repeats)
    rule = Rule(direction=1, min_effect=MIN_EFFECT * scenario.scale)
    covered = supported = refuted = 0
    for arm, base in zip(arms, bases, strict=True):
        c = compare(arm, base, paired=scenario.paired, kind=scenario.kind)
        covered += c.ci_low <= scenario.delta <= c.ci_high
        v = decide([c], [c.p], rule).verdict
        supported += v == Verdict.SUPPORTED
        refuted += v == Verdict.REFUTED
    return Rates(scenario, repeats, covered / repeats, supported / repeats, refuted / repeats)


@dataclass(frozen=True)
class SequentialRates:
    """What the sequential design's simulation measured in one scenario (its ``seeds``
    being the cap)."""

    scenario: Scenario
    repeats: int
    supported: float
    refuted: float
    mean_seeds: float  # seeds per arm when it stopped, on average
    at_cap: float  # how often it stopped at the cap undecided


def run_sequential(scenario: Scenario, repeats: int, seed: int = 0) -> SequentialRates:
    """Simulate the sequential design with a cap of ``scenario.seeds`` under its own
    stopping rule (``analysis.sequential.replay``), ``repeats`` times."""
    rng = np.random.default_rng([seed, zlib.crc32(repr(scenario).encode()), 1])
    arms, bases = scenario.draw(rng, repeats)
    design = Design(scenario.seeds)
    supported = refuted = seeds = capped = 0
    for arm, base in zip(arms, bases, strict=True):

        def judge_at(n: int, level: float, arm=arm, base=base) -> tuple[None, dict[str, Reading]]:
            c = compare(arm[:n], base[:n], paired=scenario.paired, kind=scenario.kind,
                        confidence=1 - level)  # fmt: skip
            rule = Rule(direction=1, min_effect=MIN_EFFECT * scenario.scale, alpha=level)
            return None, {"": read(c, c.p, rule)}

        last = replay(design, judge_at)[-1]
        v = conclude(list(last.readings.values()), Rule(1, MIN_EFFECT)).verdict
        supported += v == Verdict.SUPPORTED
        refuted += v == Verdict.REFUTED
        seeds += last.seeds
        capped += last.stopped == "cap" and not decided(last.readings[""])
    return SequentialRates(scenario, repeats, supported / repeats, refuted / repeats,
                           seeds / repeats, capped / repeats)  # fmt: skip


def _table(columns: list[str], rows: list, cells: Callable[[dict], list[str]]) -> str:
    """A markdown table of ``rows`` (rates), one line per design (noise, outcome,
    pairing, seeds) with ``cells`` made from its rates by effect."""
    designs: dict[tuple, dict] = {}
    for r in rows:
        s = r.scenario
        designs.setdefault((s.noise, s.kind, s.paired, s.seeds), {})[s.effect] = r
    head = ["noise", "outcome", "design", "seeds", *columns]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (noise, kind, paired, seeds), by_effect in designs.items():
        design = [noise, kind, "paired" if paired else "unpaired", str(seeds)]
        lines.append("| " + " | ".join([*design, *cells(by_effect)]) + " |")
    return "\n".join(lines)


def _each(by_effect: dict, value: Callable[[object], str]) -> str:
    return " / ".join(value(by_effect[e]) for e in EFFECTS)


def sequential_markdown(rows: list[SequentialRates]) -> str:
    """The sequential design's table: error rates under its stopping rule, power, and
    the seeds it used (the seeds column: its cap)."""
    return _table(
        ["supported, no effect", "refuted, effect = min", "supported, effect = 2·min",
         "mean seeds (0 / min / 2·min)", "undecided at the cap (0 / min / 2·min)"],
        rows,
        lambda e: [f"{e[0.0].supported:.3f}", f"{e[1.0].refuted:.3f}", f"{e[2.0].supported:.3f}",
                   _each(e, lambda r: f"{r.mean_seeds:.1f}"),
                   _each(e, lambda r: f"{r.at_cap:.2f}")],
    )  # fmt: skip


def monte_carlo_error(rate: float, repeats: int) -> float:
    """The standard error of a simulated rate."""
    return math.sqrt(max(rate * (1 - rate), 1e-12) / repeats)


def markdown(rows: list[Rates]) -> str:
    """The table docs/STATISTICS.md shows: one row per design, coverage at the three
    effects, supported at no effect, refuted at the smallest effect that matters."""
    return _table(
        ["coverage (0 / min / 2·min)", "supported, no effect", "refuted, effect = min",
         "supported, effect = 2·min"],
        rows,
        lambda e: [_each(e, lambda r: f"{r.coverage:.3f}"), f"{e[0.0].supported:.3f}",
                   f"{e[1.0].refuted:.3f}", f"{e[2.0].supported:.3f}"],
    )  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    """Print the calibration table (``--repeats`` per scenario)."""
    parser = argparse.ArgumentParser(prog="python -m normlab.analysis.calibration")
    parser.add_argument("--repeats", type=int, default=4000)
    args = parser.parse_args(argv)
    rows = [run(s, args.repeats) for s in scenarios()]
    print(f"{args.repeats} simulated studies per scenario; Monte Carlo standard error at "
          f"0.95: {monte_carlo_error(0.95, args.repeats):.4f}, at 0.025: "
          f"{monte_carlo_error(0.025, args.repeats):.4f}\n")  # fmt: skip
    print(markdown(rows))
    print(f"\nThe sequential design (cap {Design(20).cap}, looks at {Design(20).seeds} seeds), "
          "under its own stopping rule:\n")
    print(sequential_markdown([run_sequential(s, args.repeats) for s in scenarios((20,))]))


if __name__ == "__main__":
    main()
