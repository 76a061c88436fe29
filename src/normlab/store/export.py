"""Tidy exports: one row per run × epoch (or probe value, or evaluation), every config
field a column."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

from normlab.store.db import Store, StoreError

# The run columns that lead every table, then the table's own columns in this order;
# the remaining config fields follow alphabetically.
RUN_COLUMNS = (
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
)
# table -> (store column -> export column), in export order
TABLES: dict[str, dict[str, str]] = {
    "epochs": {
        "epoch": "epoch",
        "train_loss": "train_loss",
        "train_acc": "train_acc",
        "val_loss": "val_loss",
        "val_acc": "val_acc",
        "test_loss": "test_loss",
        "test_acc": "test_acc",
        "seconds": "epoch_seconds",
        "eval_seconds": "eval_seconds",
    },
    "probes": {c: c for c in ("step", "probe", "layer", "name", "unit", "quantile", "value")},
    "evals": {c: c for c in ("step", "epoch", "seconds", "val_loss", "val_acc")},
}
FORMATS = ("csv", "parquet")


def leading(table: str = "epochs") -> tuple[str, ...]:
    """The first columns of an export of ``table``, in order."""
    return (*RUN_COLUMNS, *TABLES[table].values(), "status")


ConfigReader = Callable[[str], dict[str, object]]


def rows(
    store: Store, study: str, table: str = "epochs", read_config: ConfigReader = json.loads
) -> list[dict[str, object]]:
    """Every row of ``table`` (epochs, probes or evals) for the runs of ``study``,
    flattened with the run's config as ``read_config`` parses the stored JSON (the
    caller's run-config model fills in fields that older runs predate)."""
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}: choose one of {', '.join(TABLES)}")
    by_run = getattr(store, table)(study)
    out = []
    for run in store.runs(study):
        config = read_config(run.config)
        for name, value in config.items():  # lists (widths, probes) as one cell
            if isinstance(value, list | tuple):
                config[name] = ("," if name == "probes" else "-").join(map(str, value))
        for record in by_run.get(run.id, []):
            out.append(
                {
                    **config,
                    "study": study,
                    "run_id": run.id,
                    "cohort": run.cohort,
                    "status": str(run.status),
                    **{name: getattr(record, column) for column, name in TABLES[table].items()},
                }
            )
    return out


def columns(table: list[dict[str, object]], kind: str = "epochs") -> list[str]:
    first = leading(kind)
    return [*first, *sorted({k for r in table for k in r} - set(first))]


def write(records: list[dict[str, object]], cols: list[str], fmt: str, out: Path) -> int:
    """Write ``records`` (their ``cols``, in order) to ``out`` as ``fmt``; the row count."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}: choose csv or parquet")
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        with out.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=cols)
            writer.writeheader()
            writer.writerows(records)
        return len(records)
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise StoreError("parquet export needs pyarrow: pip install 'normlab[parquet]'") from None
    pq.write_table(pa.table({c: [r.get(c) for r in records] for c in cols}), out)
    return len(records)
