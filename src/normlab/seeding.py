"""Independent random streams derived from one run seed.

Every source of randomness in a run (initial weights per layer, data order, dropout
masks) gets its own stream, derived from the run seed and a purpose with NumPy's
SeedSequence. Streams therefore never depend on how many other runs share a stack.
"""

from __future__ import annotations

import numpy as np

PURPOSES = {"init": 1, "data_order": 2, "dropout": 3}


def derive_seed(seed: int, purpose: str, index: int = 0) -> int:
    """A 63-bit seed for stream ``purpose`` (and ``index``, e.g. a layer) of run ``seed``."""
    if seed < 0:
        raise ValueError(f"seeds must be non-negative, got {seed}")
    state = np.random.SeedSequence([seed, PURPOSES[purpose], index]).generate_state(2, np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1]))
