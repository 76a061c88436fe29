"""Virtual batch normalization (Salimans et al. 2016), the GAN generator's alternative
to BN: each example is normalized by the statistics of a fixed reference batch together
with itself, so that no example depends on the others of its batch.

The network feeds the reference batch along: a layer's input is ``[K, R + B, units]``,
its first ``R`` rows (``NormSettings.reference_batch``) the reference batch's, which are
normalized by their own statistics (as in the authors' code). Example x of the rest is
normalized by μ = (R·μ_ref + x)/(R + 1) and σ² = (R·E_ref[h²] + x²)/(R + 1) − μ². The
reference statistics are recomputed at every pass from the current weights, so
gradients flow through them; eval mode is the same computation.
"""

from __future__ import annotations

import torch

from normlab.models.norms import _Affine
from normlab.models.registry import NORMS, NormKind
from normlab.models.settings import NormSettings


class VirtualBatchNorm(_Affine):
    """Virtual BN over dense layers' ``[K, R + B, units]``, per member and unit."""

    kind: NormKind = NORMS["virtual_batch"]

    def __init__(self, k: int, units: int, settings: NormSettings) -> None:
        super().__init__(k, units, settings)
        self.settings = settings

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r, eps = self.settings.reference_batch, self.settings.eps
        if x.dim() != 3 or x.shape[1] <= r:
            raise ValueError(
                f"virtual BN needs [K, {r} reference rows + batch, units], got {tuple(x.shape)}"
            )
        ref, rest = x[:, :r], x[:, r:]
        mean_ref, sq_ref = ref.mean(1, keepdim=True), (ref * ref).mean(1, keepdim=True)
        w = 1.0 / (r + 1)
        mean = (1 - w) * mean_ref + w * rest
        var = ((1 - w) * sq_ref + w * rest * rest - mean * mean).clamp(min=0.0)
        var_ref = (sq_ref - mean_ref * mean_ref).clamp(min=0.0)
        normalized = torch.cat(
            [(ref - mean_ref) * torch.rsqrt(var_ref + eps), (rest - mean) * torch.rsqrt(var + eps)],
            1,
        )
        return self.affine(normalized)
