"""Training stacks of runs: cohorts, stacked optimizers, the loop, divergence handling."""

from normlab import runtime as _runtime  # noqa: F401  (flush denormals before any torch op)
