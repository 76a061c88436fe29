"""A GAN built as a stack of K independent members, each a generator and a discriminator.

Both networks are stacked MLPs (``models.mlp.stack``), so each member has its own
weights, normalization statistics and random streams, and a member trains alone exactly
as it trains in a stack. A training step has two phases (``parameter_groups``): the
discriminator's, on the step's real batch and a generated batch, then the generator's,
on a fresh generated batch with the non-saturating loss −log D(G(z)) (Goodfellow et al.
2014). The discriminator sees the real and generated batches apart, or as one joint
batch (``GANSpec.joint_batch``). Each phase draws its latent noise from the member's
step key, so the noise is a pure function of (seed, step) on every device.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from normlab.models.dropout import gaussian, key_bases
from normlab.models.gan.spec import GANSpec
from normlab.models.mlp.stack import StackedMLP
from normlab.models.stack import StackedModel
from normlab.seeding import derive_seed


class StackedGAN(StackedModel):
    """K members of one GANSpec, member k initialised from ``seeds[k]``."""

    def __init__(self, spec: GANSpec, seeds: Sequence[int]) -> None:
        super().__init__()
        self.spec, self.k = spec, len(seeds)
        self.generator = StackedMLP(spec.generator, seeds)
        self.discriminator = StackedMLP(
            spec.discriminator, [derive_seed(s, "discriminator") for s in seeds]
        )
        samples = [derive_seed(s, "samples") for s in seeds]
        self.register_buffer("sample_keys", key_bases(samples, "cpu"))
        reference = None
        if spec.reference_batch:
            shape = (spec.reference_batch, spec.latent)
            gens = [torch.Generator().manual_seed(derive_seed(s, "reference_batch")) for s in seeds]
            reference = torch.stack([torch.randn(shape, generator=g) for g in gens])
        self.register_buffer("reference", reference)

    @property
    def dropout_layers(self) -> int:
        return 0

    @property
    def step_keys(self) -> int:
        """One key per phase: each draws its own latent batch."""
        return 2

    def parameter_groups(self) -> list[list[nn.Parameter]]:
        return [list(self.discriminator.parameters()), list(self.generator.parameters())]

    def generate(self, z: torch.Tensor) -> torch.Tensor:
        """Images [K, B, n_features] in [-1, 1] from latent vectors ``z`` [K, B, latent]
        (with virtual BN, the reference batch rides along in front and is dropped)."""
        if self.reference is None:
            return torch.tanh(self.generator(z))
        images = torch.tanh(self.generator(torch.cat([self.reference, z], 1)))
        return images[:, self.spec.reference_batch :]

    def noise(self, keys: torch.Tensor, batch: int) -> torch.Tensor:
        """Latent vectors [K, batch, latent] drawn from the members' ``keys`` [K]."""
        return gaussian(keys, batch * self.spec.latent).view(self.k, batch, self.spec.latent)

    def phase_loss(
        self, phase: int, x: torch.Tensor, y: torch.Tensor, keys: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Phase 0, the discriminator: −log D(x) − log(1 − D(G(z))) over the real batch
        ``x`` and a generated one, and how many real images it calls real. Phase 1, the
        generator: −log D(G(z′)). (Logits through softplus: −log σ(t) = softplus(−t).)"""
        assert keys is not None
        b = x.shape[1]
        if phase == 0:
            with torch.no_grad():
                fake = self.generate(self.noise(keys[0], b))
            real_logits, fake_logits = self.judge(x, fake)
            losses = F.softplus(-real_logits).mean((1, 2)) + F.softplus(fake_logits).mean((1, 2))
            return losses, (real_logits > 0).sum((1, 2))
        _, fake_logits = self.judge(x, self.generate(self.noise(keys[1], b)))
        return F.softplus(-fake_logits).mean((1, 2)), None

    def judge(self, real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The discriminator's logits on a step's ``real`` and ``fake`` images [K, B, D]:
        as two batches, or with ``joint_batch`` as one (a BN discriminator then
        normalizes both together, in the generator's phase too, so that its statistics
        mean the same in both phases; the generator gets no gradient from the real half)."""
        if not self.spec.joint_batch:
            return self.discriminator(real), self.discriminator(fake)
        logits = self.discriminator(torch.cat([real, fake], 1))
        return logits[:, : real.shape[1]], logits[:, real.shape[1] :]

    def forward(
        self,
        x: torch.Tensor,
        dropout_keys: torch.Tensor | None = None,
        *,
        shared: object | None = None,
        taps: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """The discriminator's logits [K, B, 1] for images [K, B, D] or [B, D]."""
        return self.discriminator(x, shared=shared, taps=taps)

    def shared_input(self) -> object | None:
        return self.discriminator.shared_input()

    def held_out(
        self, x: torch.Tensor, y: torch.Tensor, shared: object | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """On held-out real images: the discriminator's loss −log D(x) [K] and how many
        it calls real [K] (its accuracy on real data; labels are not used)."""
        logits = self(x, shared=shared)
        return F.softplus(-logits).mean((1, 2)), (logits > 0).sum((1, 2))

    @torch.no_grad()
    def sample(self, n: int, batch_size: int) -> torch.Tensor:
        """``n`` images per member [K, n, n_features], generated in batches of
        ``batch_size`` as in training (train mode: a BN generator normalizes over the
        batch it draws), from the members' fixed sample streams; running statistics are
        left as they were."""
        z = self.noise(self.sample_keys, n)
        was_training = self.training
        self.train()
        with self.frozen_statistics():
            out = torch.cat([self.generate(z[:, i : i + batch_size])
                             for i in range(0, n, batch_size)], 1)  # fmt: skip
        self.train(was_training)
        return out
