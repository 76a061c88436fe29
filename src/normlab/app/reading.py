"""``summary``: a study's final-epoch metrics per configuration, read from the database
(``normlab show``). Torch-free: reading never loads the trainer."""

from __future__ import annotations

from pathlib import Path
from typing import Unpack

from normlab.analysis.summary import StudySummary, summarize
from normlab.app.execution import Execution, ExecutionOptions
from normlab.errors import InputError
from normlab.experiments.errors import open_store
from normlab.store.db import StoreError


def summary(
    study: str | None = None,
    factors: list[str] | None = None,
    execution: Execution | None = None,
    **options: Unpack[ExecutionOptions],
) -> StudySummary:
    """``study``'s (default: the latest) reported test metrics per configuration
    over seeds, grouped by ``factors`` (default: the fields that vary), from the
    execution's database; InputError if there is none or no such study."""
    db = Execution.of(execution, options).db
    if not Path(db).exists():
        raise InputError(f"{db}: no such database", "db")
    with open_store(db) as store:
        try:
            name = store.resolve_study(study)
        except StoreError as err:
            raise InputError(str(err), "study") from None
        return summarize(store, name, factors)
