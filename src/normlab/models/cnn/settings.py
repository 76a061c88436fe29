"""The CNN's section of a run's configuration: its conv blocks (torch-free)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class CNNSettings(BaseModel):
    """What only a CNN run sets: its conv blocks' channels and kernel."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: Literal["cnn"] = "cnn"
    channels: tuple[int, ...] = Field(
        (32, 64), description="cnn: output channels of each conv block"
    )
    kernel: int = Field(3, ge=1, description="cnn: convolution kernel size (same padding)")
