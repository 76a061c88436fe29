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
  given its weights has 0 up to noise);
- ``recognizable``: the fraction of images whose every channel lies as near a real
  digit as real digits do: its Euclidean distance to the nearest of the run's first
  training images (``train_head``) is at most the ``NEAR`` quantile of the same distance
  over the held-out digits (``held_out``). A generator that failed to train draws blots
  that the classifier still files under some digit, with confidence (an untrained
  generator's images: all one digit, at probability 0.9 or more), so its KL looks like
  total collapse; this tells the two apart (``claims.measures.failed_to_train``).

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
NEAR = 0.99  # the quantile of real digits' distance to their nearest real digit
CORRELATION_BATCHES = 32  # batches the correlation reads (2,048 images at batch 64)
DIGIT_PIXELS = 28 * 28


@dataclass(frozen=True)
class Judgement:
    """Per member [K]: modes covered, KL to uniform, within-batch correlation, the
    fraction of recognizable images; and the first images [K, KEPT_IMAGES,
    channels·784] in [0, 1]."""

    modes: torch.Tensor
    kl: torch.Tensor
    batch_correlation: torch.Tensor
    recognizable: torch.Tensor
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


def nearest(digits: torch.Tensor, pool: torch.Tensor, chunk: int = 2048) -> torch.Tensor:
    """Euclidean distance [N] of each of ``digits`` [N, 784] to its nearest in ``pool``."""
    return torch.cat([torch.cdist(digits[i : i + chunk], pool).min(1).values
                      for i in range(0, len(digits), chunk)])  # fmt: skip


def recognizable(images: torch.Tensor, pool: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """The fraction [K] of ``images`` [K, n, channels·784] whose every channel is no
    farther from its nearest digit of ``pool`` [P, channels·784] than the ``NEAR``
    quantile of the held-out ``real`` images' [Q, channels·784] channels are (all in
    [0, 1])."""
    k, n, d = images.shape
    pool = pool.reshape(-1, DIGIT_PIXELS).float()
    threshold = torch.quantile(nearest(real.reshape(-1, DIGIT_PIXELS).float(), pool), NEAR)
    far = nearest(images.reshape(-1, DIGIT_PIXELS).float(), pool).view(k, n, d // DIGIT_PIXELS)
    return (far <= threshold).all(-1).float().mean(1)


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
    real: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> Judgement:
    """Draw ``samples`` images per member of a generative stack and judge them with
    ``classify`` (digits [N] of 28×28 images [N, 784] in [0, 1]); ``real`` (a pool of
    training images and held-out ones, in [-1, 1]) measures how many are recognizable
    (None: not measured, NaN)."""
    images = (model.sample(samples, batch_size) + 1) / 2
    k = images.shape[0]
    digits = classify(images.reshape(-1, DIGIT_PIXELS)).view(k, samples, channels)
    modes, kl = coverage(mode_counts(digits, channels))
    corr = batch_correlation(images, batch_size)
    near = torch.full((k,), torch.nan)
    if real is not None:
        near = recognizable(images, (real[0] + 1) / 2, (real[1] + 1) / 2)
    return Judgement(modes, kl, corr, near, images[:, :KEPT_IMAGES])


class ModesProbe:
    """``modes``: a generator's images judged after its last update (the GAN family's
    own instrument): ``modes``, ``kl``, ``batch_correlation`` and ``recognizable``
    (layer −1), and the first ``KEPT_IMAGES`` images as pictures."""

    name = "modes"
    when = When.END

    def measure(self, context: ProbeContext) -> Iterable[Measurement | Images]:
        if context.classify is None or context.config is None:
            raise ValueError("probe 'modes' needs a GAN run's config and reference classifier")
        config = context.config
        channels = config.source.image_shape[0]
        real = (context.train_head.x, context.held_out.x)
        j = judge(context.model, context.classify, config.arch.gan_samples, config.batch_size,
                  channels, real)  # fmt: skip
        yield Measurement(WHOLE, "modes", j.modes)
        yield Measurement(WHOLE, "kl", j.kl)
        yield Measurement(WHOLE, "batch_correlation", j.batch_correlation)
        yield Measurement(WHOLE, "recognizable", j.recognizable)
        yield Images(channels, j.images)
