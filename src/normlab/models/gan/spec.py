"""The GAN's architecture as data (torch-free): two MLPs and the latent they start from."""

from __future__ import annotations

from dataclasses import dataclass

from normlab.models.mlp.spec import MLPSpec


@dataclass(frozen=True)
class GANSpec:
    """Every member of a stack: a ``generator`` from ``latent`` normal values to an
    image of ``n_features`` values in [0, 1] (a sigmoid after its last layer) and a
    ``discriminator`` from an image to one logit (real: positive). A generator whose norm
    needs a reference batch (virtual BN) carries ``reference_batch`` fixed latent vectors
    through every forward pass."""

    latent: int
    n_features: int
    generator: MLPSpec
    discriminator: MLPSpec
    reference_batch: int = 0

    @property
    def parameters(self) -> int:
        """Parameters of one member, both networks."""
        return self.generator.parameters + self.discriminator.parameters
