"""What the notebook as written actually measured.

Its "with BN" model is the plain network (the layer is constructed, never called), so
the first leg of its batch-size loop repeats cell 7's first epochs. This module puts
the two side by side and measures how far apart they are.
"""

from __future__ import annotations

from dataclasses import dataclass

from normlab.experiments.reproduce import Faithful
from normlab.store.db import Store

_COMPARED = ("train_loss", "train_acc", "test_loss", "test_acc")


@dataclass(frozen=True)
class CellResult:
    """One cell's training as the notebook ran it, and its last epoch's test metrics."""

    cell: str
    model: str
    batch_size: int
    epochs: int
    test_acc: float
    test_loss: float


@dataclass(frozen=True)
class FaithfulComparison:
    """The notebook's cells that finished, and how far cell 12's first leg is from cell
    7 over their common epochs (``gap``: the largest absolute difference in train/test
    loss and accuracy; None while either is missing)."""

    cells: list[CellResult]
    epochs: int
    gap: float | None

    @property
    def verdict(self) -> str:
        """One line saying what the comparison shows."""
        if self.gap is None:
            return "the notebook's runs are incomplete: no comparison"
        if self.gap == 0.0:
            return (
                f"cell 12's \"with BN\" model at batch 32 repeats cell 7's first {self.epochs} "
                "epochs exactly (max abs difference 0 over train/test loss and accuracy): "
                "it is a second run of the same network."
            )
        return (
            f"cell 12's \"with BN\" model at batch 32 differs from cell 7's first "
            f"{self.epochs} epochs by at most {self.gap:.3g}."
        )


def compare(store: Store, notebook: Faithful) -> FaithfulComparison:
    """The notebook's cells as stored, and cell 12's first leg set against cell 7."""
    epochs = store.epochs(notebook.name)
    legs = [("7", "no BN", notebook.cell7)]
    legs += [("12", '"with BN" (never applied), carried', leg) for leg in notebook.cell12]
    cells = [
        CellResult(cell, model, config.batch_size, config.epochs, got[-1].test_acc,
                   got[-1].test_loss)
        for cell, model, config in legs
        if (got := epochs.get(config.run_id))
    ]  # fmt: skip
    cell7 = epochs.get(notebook.cell7.run_id, [])
    first_leg = epochs.get(notebook.cell12[0].run_id, [])
    if not cell7 or not first_leg:
        return FaithfulComparison(cells, 0, None)
    gap = max(
        abs((getattr(a, m) or 0.0) - (getattr(b, m) or 0.0))
        for a, b in zip(cell7[:len(first_leg)], first_leg, strict=False)
        for m in _COMPARED
    )
    return FaithfulComparison(cells, len(first_leg), gap)
