"""The GAN's section of a run's configuration: its noise, its discriminator and its
judging (torch-free). The generator is the run's shared settings: ``hidden``, ``norm``,
``activation``."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from normlab.models.registry import NORMS


class GANSettings(BaseModel):
    """What only a GAN run sets."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: Literal["gan"] = "gan"
    latent: int = Field(64, ge=1, description="gan: the generator's noise values")
    discriminator_hidden: tuple[int, ...] = Field(
        (512, 256), description="gan: the discriminator's hidden layers' widths"
    )
    discriminator_norm: str = Field("none", description="gan: the discriminator's norm")
    discriminator_batch: Literal["separate", "joint"] = Field(
        "separate",
        description="gan: the discriminator sees real and generated images as separate "
        "batches or as one joint batch (its BN statistics then mix both)",
    )
    gan_samples: int = Field(
        10000, ge=100, description="gan: images generated per run and judged after training"
    )

    @field_validator("discriminator_norm")
    @classmethod
    def _known_norm(cls, name: str) -> str:
        NORMS[name]  # a ValueError lists the registered norms
        return name
