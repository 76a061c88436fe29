"""Stacked MLPs: K independent members computed as one batched network. Pure maths, no I/O."""

from normlab import runtime as _runtime  # noqa: F401  (flush denormals before any torch op)
