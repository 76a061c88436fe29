"""Judging what a GAN draws (claim 13): which modes, how evenly, how alike within a batch.

After a GAN run's last step each member draws ``gan_samples`` images from its fixed
sample stream, in batches of the run's batch size and in train mode, as it trained (a
BN generator normalizes over the batch it draws). The reference MNIST classifier
(``probes.reference``) names each channel's digit, so an MNIST image has one of 10
modes and a stacked-MNIST image (three digits as three channels) one of 1,000. Recorded
by the ``modes`` instrument (``ModesProbe``, the GAN family's own), layer −1:

- ``modes``: how many modes got at least one image;
- ``kl``: KL(generated mode distribution ‖ uniform) = Σ p log(p·M), in nats (0: every
  mode equally often; log M: one mode only, total collapse);
- ``batch_correlation``: the mean correlation of two images of one batch minus that of
  two images of neighbouring batches (Goodfellow's 2016 tutorial shows BN-generator
  batches whose images resemble each other; a generator whose images are independent
  given its weights has 0 up to noise).

The first ``KEPT_IMAGES`` images of the first batch are kept as pictures.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch

from normlab.models.stack import StackedModel
from normlab.probes.schedule import (
    Images,
    Measurement,
    ProbeContext,
    When,
)
from normlab.types import WHOLE

KEPT_IMAGES = 16
CORRELATION_BATCHES = 32  # batches the correlation reads (2,048 images at batch 64)
DIGIT_PIXELS = 28 * 28


@dataclass(frozen=True)
class Judgement:
    """Per member [K]: modes covered, KL to uniform, within-batch correlation; and the
    first images [K, KEPT_IMAGES, channels·784] in [0, 1]."""

    modes: torch.Tensor
    kl: torch.Tensor
    batch_correlation: torch.Tensor
    images: torch.Tensor


def mode_counts(digits: torch.Tensor, channels: int) -> torch.Tensor:
    """How often [K, 10**channels] each mode occurs among ``digits`` [K, n, channels]."""
    place = 10 ** torch.arange(channels - 1, -1, -1, device=digits.device)
    modes = (digits * place).sum(-1)
    counts = torch.zeros(len(modes), 10**channels, dtype=torch.float64, device=digits.device)
    return counts.scatter_add_(1, modes, torch.ones_like(modes, dtype=torch.float64))


def coverage(counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Modes with at least one image [K] and KL(p ‖ uniform) [K] of ``counts`` [K, M]."""
    p = counts / counts.sum(1, keepdim=True)
    terms = torch.where(p > 0, p * torch.log(p * counts.shape[1]), 0.0)
    return (counts > 0).sum(1), terms.sum(1)


def batch_correlation(images: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Mean correlation [K] of two images of one batch minus that of an image of one
    batch and one of the next, for ``images`` [K, n, D] drawn in batches of
    ``batch_size`` (at least two batches; up to ``CORRELATION_BATCHES`` are read)."""
    k, n, _ = images.shape
    batches = min(n // batch_size, CORRELATION_BATCHES)
    if batches < 2 or batch_size < 2:
        raise ValueError(f"need two batches of two images, got {n} images at {batch_size}")
    x = images[:, : batches * batch_size].double()
    x = x - x.mean(-1, keepdim=True)
    x = x / x.norm(dim=-1, keepdim=True).clamp(min=1e-12)
    x = x.view(k, batches, batch_size, -1)
    within = x @ x.transpose(-1, -2)
    off_diagonal = within.sum((-1, -2)) - within.diagonal(dim1=-2, dim2=-1).sum(-1)
    within_mean = off_diagonal.mean(1) / (batch_size * (batch_size - 1))
    between = (x[:, :-1] @ x[:, 1:].transpose(-1, -2)).mean((1, 2, 3))
    return (within_mean - between).float()


@torch.no_grad()
def judge(
    model: StackedModel,
    classify: Callable[[torch.Tensor], torch.Tensor],
    samples: int,
    batch_size: int,
    channels: int,
) -> Judgement:
    """Draw ``samples`` images per member of a generative stack and judge them with
    ``classify`` (digits [N] of 28×28 images [N, 784] in [0, 1])."""
    images = (model.sample(samples, batch_size) + 1) / 2
    k = images.shape[0]
    digits = classify(images.reshape(-1, DIGIT_PIXELS)).view(k, samples, channels)
    modes, kl = coverage(mode_counts(digits, channels))
    corr = batch_correlation(images, batch_size)
    return Judgement(modes, kl, corr, images[:, :KEPT_IMAGES])


class ModesProbe:
    """``modes``: a generator's images judged after its last update (the GAN family's
    own instrument): ``modes``, ``kl`` and ``batch_correlation`` (layer −1), and the
    first ``KEPT_IMAGES`` images as pictures."""

    name = "modes"
    when = When.END

    def measure(self, context: ProbeContext) -> Iterable[Measurement | Images]:
        if context.classify is None or context.config is None:
            raise ValueError("probe 'modes' needs a GAN run's config and reference classifier")
        config = context.config
        channels = config.source.image_shape[0]
        j = judge(context.model, context.classify, config.arch.gan_samples, config.batch_size,
                  channels)  # fmt: skip
        yield Measurement(WHOLE, "modes", j.modes)
        yield Measurement(WHOLE, "kl", j.kl)
        yield Measurement(WHOLE, "batch_correlation", j.batch_correlation)
        yield Images(channels, j.images)
