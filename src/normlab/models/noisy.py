"""BN with noise injected after it: Santurkar et al.'s (2018) "noisy BN".

Santurkar et al. ask whether BN helps *because* it keeps each layer's input distribution
steady (internal covariate shift): they perturb every activation after BN with noise
from a distribution of non-zero mean and non-unit variance that changes at every step,
so that the next layer's inputs shift more than without BN, and find that such a network
trains about as well as plain BN. Their paper gives no exact distribution; this one is
ours. At each training step, for each member and unit (a channel is a unit), the step
draws a shift μ ~ N(0, SHIFT²) and a scale σ = exp(s − LOG_SCALE²/2), s ~ N(0, LOG_SCALE²)
(mean 1), and every example's value y becomes σ·y + μ + SPREAD·ε with its own ε ~ N(0, 1)
(for channels, one ε per example and channel, shared by its positions). The mean scale is
1 and the mean shift 0, so evaluation, which injects nothing, sees the average of what
training saw (as inverted dropout does).

The noise is a pure function of the member's key for this layer and step (``keys``
from ``models.dropout.step_keys_tensor``, as dropout's), so a member's noise does not
depend on its stack and is the same on every device. A forward pass without keys
(evaluation, precise statistics, probes that pass none) injects none.
"""

from __future__ import annotations

import torch

from normlab.models.dropout import gaussian
from normlab.models.norms import BatchNorm
from normlab.models.registry import NORMS, NormKind

SHIFT = 0.5  # sd of the step's per-unit mean shift
LOG_SCALE = 0.5  # sd of the step's per-unit log scale
SPREAD = 0.5  # sd of each example's own additive noise


class NoisyBatchNorm(BatchNorm):
    """Batch normalization whose training output carries Santurkar et al.'s noise."""

    kind: NormKind = NORMS["noisy_batch"]

    def forward(self, x: torch.Tensor, keys: torch.Tensor | None = None) -> torch.Tensor:
        y = super().forward(x)
        if not self.training or keys is None:
            return y
        k, units = self.weight.shape
        examples = y.shape[1] if y.dim() == 3 else y.shape[0]
        z = gaussian(keys, units * (2 + examples)).to(y.device)
        shift = SHIFT * z[:, :units]
        scale = torch.exp(LOG_SCALE * z[:, units : 2 * units] - LOG_SCALE**2 / 2)
        spread = SPREAD * z[:, 2 * units :].view(k, examples, units)
        if y.dim() == 3:  # [K, B, units]
            return y * scale.unsqueeze(1) + shift.unsqueeze(1) + spread
        per_unit = (1, k * units, 1, 1)  # [B, K·C, H, W]
        spread = spread.transpose(0, 1).reshape(examples, k * units, 1, 1)
        return y * scale.reshape(per_unit) + shift.reshape(per_unit) + spread
