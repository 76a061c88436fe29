"""From a claim's comparisons to a verdict: supported, refuted or inconclusive.

A claim predicts the sign of an effect (``direction``: +1 when the arm should be higher
than the baseline, -1 when lower) and comes with the smallest effect that would matter
(``min_effect``, in the outcome's units). With the Holm-corrected p-values of all the
claim's comparisons:

1. A comparison *counts* when its corrected p < ``alpha`` and its effect is at least
   ``min_effect`` in size.
2. **Supported**: at least one comparison counts, and all that count point the way the
   claim says.
3. **Refuted**: at least one counts and all that count point the other way; or none
   counts and every comparison's 95% interval excludes an effect of ``min_effect`` in
   the claimed direction (the data rule out an effect that would matter).
4. **Inconclusive**: anything else: counting comparisons in both directions, or intervals
   too wide to rule a meaningful effect in or out.

The rule never looks at what the literature expects; the expectation only decides
which sign is called "the claim".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from normlab.analysis.stats import Comparison

VERDICTS = ("supported", "refuted", "inconclusive")


@dataclass(frozen=True)
class Rule:
    """What a claim predicts and what size of effect matters."""

    direction: int
    min_effect: float
    alpha: float = 0.05

    def __post_init__(self) -> None:
        if self.direction not in (1, -1):
            raise ValueError(f"direction must be +1 or -1, got {self.direction}")
        if not self.min_effect >= 0:
            raise ValueError(f"min_effect must be >= 0, got {self.min_effect}")


def verdict(comparisons: Sequence[Comparison], p_corrected: Sequence[float], rule: Rule) -> str:
    """The verdict of one claim from its comparisons and their Holm-corrected p-values."""
    if len(comparisons) != len(p_corrected):
        raise ValueError("one corrected p-value per comparison")
    counting = [
        c.effect * rule.direction
        for c, p in zip(comparisons, p_corrected, strict=True)
        if p < rule.alpha and abs(c.effect) >= rule.min_effect
    ]
    if counting:
        if all(e > 0 for e in counting):
            return "supported"
        if all(e < 0 for e in counting):
            return "refuted"
        return "inconclusive"
    # The interval's end on the claimed side: below min_effect means the claimed effect,
    # at the size that matters, is outside what the data allow.
    claimed_ends = [max(c.ci_low * rule.direction, c.ci_high * rule.direction) for c in comparisons]
    if comparisons and all(math.isfinite(e) and e < rule.min_effect for e in claimed_ends):
        return "refuted"
    return "inconclusive"
