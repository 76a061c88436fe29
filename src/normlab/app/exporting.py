"""``export_study``: a study's rows to CSV or Parquet, as ``normlab export`` writes them.
Torch-free: exporting never loads the trainer."""

from __future__ import annotations

from pathlib import Path

from normlab.claims import values
from normlab.errors import InputError
from normlab.experiments.errors import open_store
from normlab.spec.config import RunConfig
from normlab.store import export as ex

TABLES = (*ex.TABLES, "measures")  # measures: the claims' per-seed values


def export_study(
    out: Path | str,
    fmt: str = "csv",
    table: str = "epochs",
    *,
    db: Path | str = "normlab.db",
    study: str | None = None,
) -> tuple[str, int]:
    """Write ``study``'s (default: the latest) rows of ``table`` in ``db`` to ``out`` as
    ``fmt``; the study's name and the row count. InputError names a bad option."""
    if fmt not in ex.FORMATS:
        raise InputError(f"{fmt!r} is not one of {', '.join(ex.FORMATS)}", "format")
    if table not in TABLES:
        raise InputError(f"{table!r} is not one of {', '.join(TABLES)}", "table")
    if not Path(db).exists():
        raise InputError(f"{db}: no such database")
    with open_store(db) as store:
        name = store.resolve_study(study)
        if table == "measures":
            records, cols = values.measure_rows(store, name), values.COLUMNS
        else:
            records = ex.rows(store, name, table, RunConfig.as_stored_row)
            cols = ex.columns(records, table)
        return name, ex.write(records, cols, fmt, Path(out))
