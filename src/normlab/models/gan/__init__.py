"""A generative adversarial network family (``spec``, ``stack``), registered as ``gan``:
a generator MLP and a discriminator MLP per member, BN optional in each (claim 13).

Its run settings: ``hidden`` and ``norm`` are the generator's, ``discriminator_hidden``
and ``discriminator_norm`` the discriminator's, ``latent`` the noise's size. The
discriminator's activation is leaky ReLU (slope 0.2), as in DCGAN and most GANs since;
the generator's is ``activation`` (leaky ReLU by default).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType

from normlab.models.family import EVAL_CHUNK, DataShape, ModelSettings, widths
from normlab.models.gan.settings import GANSettings
from normlab.models.gan.spec import GANSpec
from normlab.models.mlp.spec import MLPSpec
from normlab.models.registry import NORMS
from normlab.models.settings import BlockSpec

DISCRIMINATOR_ACTIVATION = "leaky_relu"


class GANFamily:
    """Generator and discriminator MLPs, trained against each other."""

    name = "gan"
    generative = True
    instruments = ("modes",)  # its images judged by the reference classifier
    settings = GANSettings
    # The usual GAN recipe: Adam at 2e-4 with β₁ 0.5 (DCGAN), images in [-1, 1] as the
    # generator's tanh draws them, leaky ReLU, no dropout; PyTorch's BN constants. He
    # initialisation with zero biases: with PyTorch's default layers (small weights,
    # biases as large) a generator without BN started near one image and collapsed
    # onto it within an epoch, in plain PyTorch as here; with He weights it covered
    # every digit after 3-5 epochs.
    defaults: Mapping[str, object] = MappingProxyType(
        {"inputs": "symmetric", "dropout": 0.0, "lr": 2e-4, "beta1": 0.5, "batch_size": 64,
         "semantics": "torch", "init": "he_uniform", "activation": "leaky_relu",
         "hidden": (256, 512)}
    )  # fmt: skip
    # Measured here (issue 12, Sapphire Rapids, 2 cores, batch 64): per member a step of
    # the default GAN on MNIST (1.1M parameters) took 6.5 ms alone, 4.6 ms at K=2 and
    # 4.2 at K=4; on stacked MNIST (2.7M) 11.1 ms alone, 9.4 at K=2, 10.2 at K=4. The
    # matmuls of batch-64 layers are small, so stacking pays further than the MLP's.
    cpu_stack_parameters = 6_000_000

    def check(self, settings: ModelSettings) -> str | None:
        if settings.probes:
            return f"probes: the instruments measure classifiers, got {list(settings.probes)}"
        if settings.dropout:
            return f"dropout: the GAN family has none, got {settings.dropout}"
        if settings.inputs != "symmetric":
            return f"inputs: a GAN draws images in [-1, 1] ('symmetric'), got {settings.inputs!r}"
        gan: GANSettings = settings.arch
        for part, hidden in (("hidden", settings.hidden),
                             ("discriminator_hidden", gan.discriminator_hidden)):  # fmt: skip
            if not hidden or min(hidden) < 1:
                return f"{part}: the GAN's networks need positive widths, got {list(hidden)}"
        if gan.gan_samples < 2 * settings.batch_size:
            return (f"gan_samples: the judging draws at least two batches "
                    f"(2 × {settings.batch_size}), got {gan.gan_samples}")  # fmt: skip
        if NORMS[gan.discriminator_norm].reference_batch:
            return "discriminator_norm: virtual BN is for the generator (norm)"
        if NORMS[gan.discriminator_norm].noisy:
            return "discriminator_norm: noise injection is for classifiers"
        return None

    def units(self, settings: ModelSettings) -> tuple[int, ...]:
        return (*settings.hidden, *settings.arch.discriminator_hidden)

    def spec(self, settings: ModelSettings, data: DataShape) -> GANSpec:
        gan: GANSettings = settings.arch
        options = BlockSpec.options(settings)
        generator = MLPSpec(n_inputs=gan.latent, hidden=tuple(settings.hidden),
                            n_classes=data.n_features, **options)  # fmt: skip
        options.update(activation=DISCRIMINATOR_ACTIVATION, norm=gan.discriminator_norm)
        discriminator = MLPSpec(n_inputs=data.n_features, n_classes=1,
                                hidden=tuple(gan.discriminator_hidden), **options)  # fmt: skip
        joint = gan.discriminator_batch == "joint"
        return GANSpec(gan.latent, data.n_features, generator, discriminator, joint)

    def build(self, spec: GANSpec, seeds: Sequence[int]):
        from normlab.models.gan.stack import StackedGAN

        return StackedGAN(spec, seeds)

    def member_parameters(self, spec: GANSpec) -> int:
        return spec.parameters

    def member_bytes(self, spec: GANSpec, batch_size: int) -> int:
        """As two MLPs', the discriminator seeing two batches (real and generated) and the
        generator one more for virtual BN's reference."""
        g, d = spec.generator, spec.discriminator
        rows = batch_size + spec.reference_batch
        activations = rows * 4 * (sum(g.hidden) + g.n_classes) + 2 * batch_size * (
            d.n_inputs + 4 * sum(d.hidden)
        )
        evaluation = EVAL_CHUNK * (d.n_inputs + sum(d.hidden))
        return 4 * (4 * spec.parameters + activations + evaluation)

    def forward_flops(self, spec: GANSpec) -> int:
        """One generated image judged: a generator and a discriminator pass."""
        return 2 * spec.parameters

    def describe(self, settings: ModelSettings) -> str:
        return f"GAN G {widths(settings.hidden)} D {widths(settings.arch.discriminator_hidden)}"


FAMILY = GANFamily()
