"""What the notebook as written actually measured.

Its "with BN" model is the plain network (the layer is constructed, never called), so
the first leg of its batch-size loop repeats cell 7's first epochs. This module puts
the two side by side and measures how far apart they are.
"""

from __future__ import annotations

from normlab.experiments.reproduce import Faithful
from normlab.store.db import Store

_COMPARED = ("train_loss", "train_acc", "test_loss", "test_acc")


def compare(store: Store, notebook: Faithful) -> tuple[list[tuple[object, ...]], str]:
    """Rows (cell, model, batch, epochs, test acc, test loss) and a one-line verdict."""
    epochs = {}
    for e in store.epochs(notebook.name):
        epochs.setdefault(e["run_id"], []).append(e)
    rows: list[tuple[object, ...]] = []
    cell7 = epochs.get(notebook.cell7.run_id, [])
    if cell7:
        rows.append(
            (
                "7",
                "no BN",
                32,
                notebook.cell7.epochs,
                f"{cell7[-1]['test_acc']:.4f}",
                f"{cell7[-1]['test_loss']:.4f}",
            )
        )
    for leg in notebook.cell12:
        got = epochs.get(leg.run_id, [])
        if got:
            rows.append(
                (
                    "12",
                    '"with BN" (never applied), carried',
                    leg.batch_size,
                    leg.epochs,
                    f"{got[-1]['test_acc']:.4f}",
                    f"{got[-1]['test_loss']:.4f}",
                )
            )
    first_leg = epochs.get(notebook.cell12[0].run_id, [])
    if not cell7 or not first_leg:
        return rows, "the notebook's runs are incomplete: no comparison"
    n = len(first_leg)
    gap = max(
        abs((a[m] or 0.0) - (b[m] or 0.0))
        for a, b in zip(cell7[:n], first_leg, strict=False)
        for m in _COMPARED
    )
    if gap == 0.0:
        verdict = (
            f"cell 12's \"with BN\" model at batch 32 repeats cell 7's first {n} epochs "
            "exactly (max abs difference 0 over train/test loss and accuracy): "
            "it is a second run of the same network."
        )
    else:
        verdict = (
            f"cell 12's \"with BN\" model at batch 32 differs from cell 7's first {n} "
            f"epochs by at most {gap:.3g}."
        )
    return rows, verdict
