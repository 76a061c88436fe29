"""Independent random streams derived from one run seed.

Every source of randomness in a run (initial weights per layer, data order, dropout
masks; a GAN's networks and noise) gets its own stream, derived from the run seed and a
purpose with NumPy's SeedSequence. Streams therefore never depend on how many other runs
share a stack.
"""

from __future__ import annotations

import numpy as np

# A GAN's discriminator initialises from its own stream; its generator's samples for
# judging and virtual BN's reference batch are fixed draws of their own.
PURPOSES = {
    "init": 1,
    "data_order": 2,
    "dropout": 3,
    "discriminator": 4,
    "samples": 5,
    "reference_batch": 6,
}


def derive_seed(seed: int, purpose: str, index: int = 0) -> int:
    """A 63-bit seed for stream ``purpose`` (and ``index``, e.g. a layer) of run ``seed``."""
    if seed < 0:
        raise ValueError(f"seeds must be non-negative, got {seed}")
    state = np.random.SeedSequence([seed, PURPOSES[purpose], index]).generate_state(2, np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1]))
