"""Settings every model family's hidden blocks share, and its norms' numeric settings
(torch-free, so that a run's configuration can derive them without importing torch)."""

from __future__ import annotations

from dataclasses import dataclass, field

from normlab.models.registry import ACTIVATIONS, NORMS, POSITIONS


@dataclass(frozen=True)
class NormSettings:
    """Numeric settings shared by the normalization layers of one network."""

    eps: float = 1e-3
    momentum: float = 0.01  # PyTorch convention: weight of the new batch statistic
    unbiased_running_var: bool = False
    groups: int = 32
    ghost_batch_size: int = 32
    renorm_rmax: float = 3.0
    renorm_dmax: float = 5.0
    renorm_ramp_steps: int = 5000
    affine: bool = True  # learn the gain γ and shift β; False: frozen at their start
    gain: float = 1.0  # γ's initial value (β starts at 0)
    reference_batch: int = 64  # virtual BN's fixed reference (Salimans et al. 2016 used 100)


@dataclass(frozen=True, kw_only=True)
class BlockSpec:
    """What every hidden block of a family reads (the families' specs extend it).

    A hidden block is layer -> [norm if "before"] -> activation -> [norm if "after"],
    then dropout on dense blocks; ``dropout_position="before"`` moves the dropout to
    right after the dense layer, so that it feeds the norm directly (Li et al. 2019's
    "dropout before BN").
    """

    activation: str = "relu"
    norm: str = "none"
    norm_position: str = "before"
    dropout: float = 0.0
    dropout_position: str = "after"
    init: str = "glorot_uniform"
    init_scale: float = 1.0
    norm_settings: NormSettings = field(default_factory=NormSettings)

    def __post_init__(self) -> None:
        ACTIVATIONS[self.activation]
        NORMS[self.norm]
        if self.norm_position not in POSITIONS:
            raise ValueError(f"norm_position must be before or after, got {self.norm_position!r}")
        if self.dropout_position not in POSITIONS:
            raise ValueError(
                f"dropout_position must be before or after, got {self.dropout_position!r}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    @staticmethod
    def options(settings) -> dict[str, object]:
        """These fields' values from a run's settings (``ModelSettings``)."""
        return {
            "activation": settings.activation,
            "norm": settings.norm,
            "norm_position": settings.norm_position,
            "dropout": settings.dropout,
            "dropout_position": settings.dropout_position,
            "init": settings.init,
            "init_scale": settings.init_scale,
            "norm_settings": settings.norm_settings(),
        }
