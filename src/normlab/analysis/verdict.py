"""From a claim's comparisons to a verdict: supported, refuted or inconclusive.

A claim predicts the sign of an effect (``direction``: +1 when the arm should be higher
than the baseline, -1 when lower) and comes with the smallest effect that would matter
(``min_effect``, in the outcome's units). Each comparison is read at one standard of
evidence, its two-sided 95% interval (equivalently, a one-sided test at 2.5% each way)
and its Holm-corrected p-value:

- **for** the claim: corrected p < ``alpha`` with the effect the claimed way, and the
  interval still reaching ``min_effect`` that way;
- **against** it: corrected p < ``alpha`` with the effect the other way;
- **negligible**: the interval's end on the claimed side is below ``min_effect`` (an
  equivalence, or rather non-superiority, test: any effect the claimed way is smaller
  than the smallest that matters); a comparison *against* is negligible too;
- **open**: none of these.

Then a claim is **supported** when at least one comparison is *for* and none *against*;
**refuted** when one is *against* and none *for* (basis "opposite"), or when every one
is negligible (basis "equivalence": no effect that matters); **inconclusive** otherwise.
Under no effect a comparison is *for* with probability at most alpha/2 (Holm keeps the
family at that), and at an effect of exactly ``min_effect`` it is negligible with
probability at most alpha/2: support and refutation need the same evidence.

Two variants serve claims of other shapes:

- ``direction=0``: an effect of at least ``min_effect`` either way (e.g. "the choice of
  γ matters"). Supported when a comparison is significant (either sign) and not
  negligible; refuted (equivalence) when every interval lies within ±``min_effect``.
- ``absent=True``: the claim is that *no* effect of ``min_effect`` exists in the
  direction (e.g. "no other setting beats the default"). **Refuted** when a comparison
  is *for* the effect (whatever the others do); **supported** (equivalence) when every
  comparison is negligible; else inconclusive.

Several negligible comparisons need no multiplicity correction: the claim is refuted
(or, for absence, supported) only when all of them are, an intersection-union test.
The rule never looks at what the literature expects; the expectation only decides
which sign is called "the claim".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from normlab.analysis.stats import Comparison


class Verdict(StrEnum):
    """A claim's verdict (equal to its string, so JSON and older scripts read it)."""

    SUPPORTED = "supported"
    REFUTED = "refuted"
    INCONCLUSIVE = "inconclusive"
    NOT_APPLICABLE = "not applicable"


class Basis(StrEnum):
    """What a verdict rests on: an effect shown the claimed way, one shown the other
    way, an effect shown smaller than the size that matters, or none of these."""

    EFFECT = "effect"
    OPPOSITE = "opposite"
    EQUIVALENCE = "equivalence"
    NONE = ""


class Reading(StrEnum):
    """What one comparison says about the claim (see the module's docstring)."""

    FOR = "for"
    AGAINST = "against"
    NEGLIGIBLE = "negligible"
    OPEN = "open"


@dataclass(frozen=True)
class Rule:
    """What a claim predicts and what size of effect matters."""

    direction: int  # +1, -1, or 0 for either
    min_effect: float
    alpha: float = 0.05
    absent: bool = False  # the claim is that no such effect exists

    def __post_init__(self) -> None:
        if self.direction not in (1, -1, 0):
            raise ValueError(f"direction must be +1, -1 or 0, got {self.direction}")
        if not self.min_effect >= 0:
            raise ValueError(f"min_effect must be >= 0, got {self.min_effect}")


@dataclass(frozen=True)
class Decision:
    """A verdict with its basis and each comparison's reading, in order."""

    verdict: Verdict
    basis: Basis
    readings: tuple[Reading, ...]


def negligible(c: Comparison, rule: Rule) -> bool:
    """Whether a comparison's interval excludes an effect of ``min_effect`` in the
    claimed direction (its end on the claimed side is below it; both ends, for
    direction 0)."""
    signs = (rule.direction,) if rule.direction else (1, -1)
    return all(
        math.isfinite(end) and end < rule.min_effect
        for end in (max(c.ci_low * s, c.ci_high * s) for s in signs)
    )


def read(c: Comparison, p_corrected: float, rule: Rule) -> Reading:
    """One comparison's reading, from its interval and its Holm-corrected p."""
    shown = p_corrected < rule.alpha and c.effect != 0
    if shown and aligned(c.effect, rule) < 0:
        return Reading.AGAINST
    if negligible(c, rule):
        return Reading.NEGLIGIBLE
    return Reading.FOR if shown else Reading.OPEN


def aligned(effect: float, rule: Rule) -> float:
    """An effect signed so that positive is the way the rule looks (its size for
    direction 0)."""
    return abs(effect) if rule.direction == 0 else effect * rule.direction


def decide(comparisons: Sequence[Comparison], p_corrected: Sequence[float], rule: Rule) -> Decision:
    """The verdict of one claim, its basis and its comparisons' readings."""
    if len(comparisons) != len(p_corrected):
        raise ValueError("one corrected p-value per comparison")
    readings = tuple(read(c, p, rule) for c, p in zip(comparisons, p_corrected, strict=True))
    return conclude(readings, rule)


def conclude(readings: Sequence[Reading], rule: Rule) -> Decision:
    """The verdict that comparisons' readings give (see the module's docstring)."""
    readings = tuple(readings)
    has_for, has_against = Reading.FOR in readings, Reading.AGAINST in readings
    all_negligible = bool(readings) and all(
        r in (Reading.NEGLIGIBLE, Reading.AGAINST) for r in readings
    )
    if rule.absent:
        if has_for:
            return Decision(Verdict.REFUTED, Basis.EFFECT, readings)
        if all_negligible:
            return Decision(Verdict.SUPPORTED, Basis.EQUIVALENCE, readings)
    elif has_for and not has_against:
        return Decision(Verdict.SUPPORTED, Basis.EFFECT, readings)
    elif has_against and not has_for:
        return Decision(Verdict.REFUTED, Basis.OPPOSITE, readings)
    elif all_negligible:
        return Decision(Verdict.REFUTED, Basis.EQUIVALENCE, readings)
    return Decision(Verdict.INCONCLUSIVE, Basis.NONE, readings)


def verdict(comparisons: Sequence[Comparison], p_corrected: Sequence[float], rule: Rule) -> Verdict:
    """The verdict of one claim from its comparisons and their Holm-corrected p-values."""
    return decide(comparisons, p_corrected, rule).verdict
