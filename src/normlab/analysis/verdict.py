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

Two variants serve claims of other shapes:

- ``direction=0``: the claim is that an effect of at least ``min_effect`` exists in
  either direction (e.g. "the choice of γ matters"). Counting comparisons support it
  whatever their signs; intervals that all lie within ±``min_effect`` refute it.
- ``absent=True``: the claim is that *no* effect of ``min_effect`` exists in the
  direction (e.g. "no other setting beats the default"). **Refuted** when a comparison
  counts that way (whatever the others do); **supported** when every interval excludes
  an effect of that size that way; else inconclusive.

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

    direction: int  # +1, -1, or 0 for either
    min_effect: float
    alpha: float = 0.05
    absent: bool = False  # the claim is that no such effect exists

    def __post_init__(self) -> None:
        if self.direction not in (1, -1, 0):
            raise ValueError(f"direction must be +1, -1 or 0, got {self.direction}")
        if not self.min_effect >= 0:
            raise ValueError(f"min_effect must be >= 0, got {self.min_effect}")


def counts(c: Comparison, p_corrected: float, rule: Rule) -> bool:
    """Whether a comparison counts: corrected p below alpha and an effect that matters."""
    return p_corrected < rule.alpha and abs(c.effect) >= rule.min_effect


def rules_out(c: Comparison, rule: Rule) -> bool:
    """Whether a comparison's interval excludes an effect of ``min_effect`` in the
    claimed direction (its end on the claimed side is below it; either end, for
    direction 0)."""
    signs = (rule.direction,) if rule.direction else (1, -1)
    return all(
        math.isfinite(end) and end < rule.min_effect
        for end in (max(c.ci_low * s, c.ci_high * s) for s in signs)
    )


def aligned(effect: float, rule: Rule) -> float:
    """An effect signed so that positive is the way the rule looks (its size for
    direction 0)."""
    return abs(effect) if rule.direction == 0 else effect * rule.direction


def verdict(comparisons: Sequence[Comparison], p_corrected: Sequence[float], rule: Rule) -> str:
    """The verdict of one claim from its comparisons and their Holm-corrected p-values."""
    if len(comparisons) != len(p_corrected):
        raise ValueError("one corrected p-value per comparison")
    pairs = list(zip(comparisons, p_corrected, strict=True))
    counting = [aligned(c.effect, rule) for c, p in pairs if counts(c, p, rule)]
    ruled_out = bool(pairs) and all(rules_out(c, rule) for c, _ in pairs)
    if rule.absent:
        if any(e > 0 for e in counting):
            return "refuted"
        return "supported" if ruled_out else "inconclusive"
    if counting:
        if all(e > 0 for e in counting):
            return "supported"
        if all(e < 0 for e in counting):
            return "refuted"
        return "inconclusive"
    # The data rule the claimed effect out when no interval reaches the size that matters.
    return "refuted" if ruled_out else "inconclusive"
