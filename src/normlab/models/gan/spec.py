"""The GAN's architecture as data (torch-free): two MLPs and the latent they start from."""

from __future__ import annotations

from dataclasses import dataclass

from normlab.models.mlp.spec import MLPSpec
from normlab.models.registry import NORMS


@dataclass(frozen=True)
class GANSpec:
    """Every member of a stack: a ``generator`` from ``latent`` normal values to an
    image of ``n_features`` values in [0, 1] (a sigmoid after its last layer) and a
    ``discriminator`` from an image to one logit (real: positive). A generator whose norm
    needs a reference batch (virtual BN) carries ``reference_batch`` fixed latent vectors
    through every forward pass. With ``joint_batch`` the discriminator sees each step's
    real and generated images as one batch, in both phases (``models.gan.stack``)."""

    latent: int
    n_features: int
    generator: MLPSpec
    discriminator: MLPSpec
    joint_batch: bool = False  # the discriminator sees real and generated images as one batch

    @property
    def reference_batch(self) -> int:
        """Rows of the fixed reference batch the generator carries (0 without virtual BN)."""
        if not NORMS[self.generator.norm].reference_batch:
            return 0
        return self.generator.norm_settings.reference_batch

    @property
    def parameters(self) -> int:
        """Parameters of one member, both networks."""
        return self.generator.parameters + self.discriminator.parameters
