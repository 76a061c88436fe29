"""The MLP's section of a run's configuration: none of its own beyond the shared
``hidden`` widths (torch-free)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict


class MLPSettings(BaseModel):
    """What only an MLP run sets: nothing but its family's name."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: Literal["mlp"] = "mlp"
