"""Tidy exports: one row per run × epoch, every config field a column."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from normlab.store.db import Store

# Leading columns in this order; the remaining config fields follow alphabetically.
LEADING = (
    "study",
    "run_id",
    "cohort",
    "norm",
    "norm_position",
    "batch_size",
    "lr",
    "optimizer",
    "seed",
    "inputs",
    "semantics",
    "epoch",
    "train_loss",
    "train_acc",
    "val_loss",
    "val_acc",
    "test_loss",
    "test_acc",
    "epoch_seconds",
    "eval_seconds",
    "status",
)
FORMATS = ("csv", "parquet")


def rows(store: Store, study: str) -> list[dict[str, object]]:
    """Every epoch of every run of ``study``, flattened with the run's config."""
    runs = {r["id"]: r for r in store.runs(study)}
    out = []
    for e in store.epochs(study):
        run = runs[e["run_id"]]
        config = json.loads(run["config"])
        config["hidden"] = "-".join(str(w) for w in config["hidden"])
        row: dict[str, object] = {
            **config,
            "study": study,
            "run_id": run["id"],
            "cohort": run["cohort"],
            "status": run["status"],
            "epoch": e["epoch"],
            "epoch_seconds": e["seconds"],
            **{
                k: e[k]
                for k in (
                    "train_loss",
                    "train_acc",
                    "val_loss",
                    "val_acc",
                    "test_loss",
                    "test_acc",
                    "eval_seconds",
                )
            },
        }
        out.append(row)
    return out


def columns(table: list[dict[str, object]]) -> list[str]:
    rest = sorted({k for r in table for k in r} - set(LEADING))
    return [*LEADING, *rest]


def export(store: Store, study: str, fmt: str, out: Path) -> int:
    """Write ``study``'s rows to ``out`` as ``fmt``; return the number of rows."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}: choose csv or parquet")
    table = rows(store, study)
    cols = columns(table)
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        with out.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=cols)
            writer.writeheader()
            writer.writerows(table)
        return len(table)
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise RuntimeError("parquet export needs pyarrow: pip install 'normlab[parquet]'") from None
    pq.write_table(pa.table({c: [r.get(c) for r in table] for c in cols}), out)
    return len(table)
