"""The settings a claim is judged on: a model family and a dataset.

The built-in studies are written for the seed's setting, its MLP on MNIST. Another
setting rewrites a study's fixed settings (the model, its convolutional blocks, the
dataset) and names the study after it, so every setting's runs live side by side in one
database and each verdict can be set beside the others (the report's verdict grid).
"""

from __future__ import annotations

from dataclasses import dataclass

from normlab.errors import InputError
from normlab.spec.study import StudySpec

MODELS = {"mlp": "MLP", "cnn": "CNN"}
DATASETS = {"mnist": "MNIST", "fashion-mnist": "Fashion"}
# What a claim study's fixed settings gain in each model's setting, per budget. The
# CNN's conv blocks: the family's default (32, 64) costs about ten times the seed's MLP
# per epoch on a CPU, so the quick budget uses a CNN of a twelfth of its convolution
# work, with GroupNorm's groups (32 elsewhere) cut to 8 so that they divide its
# channels; the regime column names the network a verdict rests on.
MODEL_FIXED: dict[str, dict[str, dict[str, object]]] = {
    "mlp": {},
    "cnn": {
        "quick": {"channels": [8, 16], "groups": 8},
        "standard": {"channels": [32, 64], "groups": 32},
        "full": {"channels": [32, 64], "groups": 32},
    },
}


@dataclass(frozen=True)
class Setting:
    """A model family (``mlp`` or ``cnn``) on a dataset (``mnist`` or ``fashion-mnist``)."""

    model: str = "mlp"
    dataset: str = "mnist"

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise InputError(f"model must be one of {', '.join(MODELS)}, got {self.model!r}",
                             "model")  # fmt: skip
        if self.dataset not in DATASETS:
            raise InputError(
                f"dataset must be one of {', '.join(DATASETS)}, got {self.dataset!r}", "dataset"
            )

    @classmethod
    def of(cls, model: str, dataset: str) -> Setting:
        """The setting a run of ``model`` on ``dataset`` belongs to. The GAN claims run
        on the seed's setting only: a GAN's networks are MLPs and stacked MNIST is made
        of MNIST, so they belong to MLP/MNIST."""
        return cls(model if model in MODELS else SEED.model,
                   dataset if dataset in DATASETS else SEED.dataset)  # fmt: skip

    @property
    def label(self) -> str:
        """E.g. "CNN/Fashion"."""
        return f"{MODELS[self.model]}/{DATASETS[self.dataset]}"

    @property
    def is_seed(self) -> bool:
        """Whether this is the seed notebook's setting, the MLP on MNIST."""
        return self == SEED

    def apply(self, spec: StudySpec, budget: str) -> StudySpec:
        """``spec`` (a study at ``budget``) in this setting: its runs on this dataset with
        this model (the seed's setting changes nothing, its name included)."""
        if self.is_seed:
            return spec
        fixed = {**spec.fixed, "model": self.model, "dataset": self.dataset,
                 **MODEL_FIXED[self.model].get(budget, {})}  # fmt: skip
        grid = {k: v for k, v in spec.grid.items() if k not in fixed}
        name = f"{spec.name}-{self.model}-{self.dataset}"
        return spec.model_copy(update={"name": name, "fixed": fixed, "grid": grid})


SEED = Setting()
SETTINGS = (SEED, Setting("cnn"), Setting("mlp", "fashion-mnist"), Setting("cnn", "fashion-mnist"))
