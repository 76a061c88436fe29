"""One SQLite file holds a collection of studies and every run they need.

Runs are keyed by their configuration's digest and shared between studies. A run's
results are written in one transaction when its training finishes; a run left
``queued``, ``running`` or ``failed`` is redone the next time a study needs it, which
is what makes an interrupted study resumable.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path

from normlab.types import (
    EpochMetrics,
    EvalPoint,
    ProbeRow,
    RunIdentity,
    RunResult,
    SampleImage,
    StepLoss,
)

SCHEMA_VERSION = 3
STATUSES = ("queued", "running", "done", "diverged", "failed")
FINISHED = ("done", "diverged")

_SCHEMA = f"""
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE studies (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    spec TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    config TEXT NOT NULL,
    cohort TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ({", ".join(repr(s) for s in STATUSES)})),
    stack_size INTEGER,
    started_at TEXT,
    finished_at TEXT,
    seconds REAL,
    diverged_step INTEGER,
    error TEXT,
    environment TEXT
);
CREATE TABLE study_runs (
    study_id INTEGER NOT NULL REFERENCES studies(id) ON DELETE CASCADE,
    run_id TEXT NOT NULL REFERENCES runs(id),
    position INTEGER NOT NULL,
    PRIMARY KEY (study_id, run_id)
);
CREATE TABLE epochs (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    epoch INTEGER NOT NULL,
    train_loss REAL, train_acc REAL,
    val_loss REAL, val_acc REAL,
    test_loss REAL, test_acc REAL,
    seconds REAL, eval_seconds REAL,
    PRIMARY KEY (run_id, epoch)
) WITHOUT ROWID;
CREATE TABLE steps (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    step INTEGER NOT NULL,
    loss REAL,
    PRIMARY KEY (run_id, step)
) WITHOUT ROWID;
"""
# Version 2 added the instruments' tables; a version 1 file gains them in place.
_SCHEMA_V2 = """
CREATE TABLE probes (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    step INTEGER NOT NULL,
    probe TEXT NOT NULL,
    layer INTEGER NOT NULL,
    name TEXT NOT NULL,
    value REAL,
    PRIMARY KEY (run_id, step, probe, layer, name)
) WITHOUT ROWID;
CREATE TABLE evals (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    step INTEGER NOT NULL,
    epoch REAL NOT NULL,
    seconds REAL NOT NULL,
    val_loss REAL,
    val_acc REAL,
    PRIMARY KEY (run_id, step)
) WITHOUT ROWID;
"""
# Version 3 added the images generators drew (claim 13).
_SCHEMA_V3 = """
CREATE TABLE samples (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    step INTEGER NOT NULL,
    "index" INTEGER NOT NULL,
    channels INTEGER NOT NULL,
    pixels BLOB NOT NULL,
    PRIMARY KEY (run_id, step, "index")
) WITHOUT ROWID;
"""
_RESULT_TABLES = ("epochs", "steps", "probes", "evals", "samples")
# Each result table's columns after run_id, by the name of the contract's field.
_COLUMNS = {
    "epochs": tuple(f.name for f in fields(EpochMetrics)),
    "steps": StepLoss._fields,
    "probes": ProbeRow._fields,
    "evals": EvalPoint._fields,
    "samples": SampleImage._fields,
}


class StoreError(RuntimeError):
    """The database cannot be used (wrong schema version, not a normlab store)."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _value(x: object) -> object:
    # SQLite would turn NaN into NULL anyway; say so explicitly. Inf is kept.
    return None if isinstance(x, float) and math.isnan(x) else x


def _insert(table: str) -> str:
    columns = [f'"{c}"' for c in ("run_id", *_COLUMNS[table])]
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


class Store:
    """A normlab SQLite database (created on first use)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(self.path)
        self.conn.row_factory = sqlite3.Row
        self.conn.execute("PRAGMA foreign_keys = ON")
        self.conn.execute("PRAGMA journal_mode = WAL")
        self._migrate()

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _migrate(self) -> None:
        tables = {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master")}
        if not tables:
            with self.conn:
                self.conn.executescript(_SCHEMA + _SCHEMA_V2 + _SCHEMA_V3)
                self.conn.execute(
                    "INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
                )
            return
        if "meta" not in tables:
            raise StoreError(f"{self.path}: not a normlab database (no meta table)")
        row = self.conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        version = int(row[0]) if row else 0
        if version == 1:
            with self.conn:
                self.conn.executescript(_SCHEMA_V2)
                self.conn.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
            version = 2
        if version == 2:
            with self.conn:
                self.conn.executescript(_SCHEMA_V3)
                self.conn.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
            version = 3
        if version != SCHEMA_VERSION:
            raise StoreError(
                f"{self.path}: schema version {version}, this normlab reads {SCHEMA_VERSION}"
            )

    # -- studies and runs ---------------------------------------------------------

    def register_study(
        self, name: str, spec: dict[str, object], runs: Sequence[RunIdentity]
    ) -> int:
        """Create or update study ``name`` so that it consists of exactly ``runs``.

        Runs not yet in the database are added as ``queued``; finished runs from any
        study are reused as they are.
        """
        now = _now()
        with self.conn:
            self.conn.execute(
                "INSERT INTO studies (name, spec, created_at, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET spec = excluded.spec, "
                "updated_at = excluded.updated_at",
                (name, json.dumps(spec, sort_keys=True), now, now),
            )
            study_id = self.conn.execute(
                "SELECT id FROM studies WHERE name = ?", (name,)
            ).fetchone()[0]
            self.conn.executemany(
                "INSERT OR IGNORE INTO runs (id, config, cohort, status) "
                "VALUES (?, ?, ?, 'queued')",
                [(c.run_id, c.model_dump_json(), c.cohort_key) for c in runs],
            )
            self.conn.execute("DELETE FROM study_runs WHERE study_id = ?", (study_id,))
            self.conn.executemany(
                "INSERT OR IGNORE INTO study_runs VALUES (?, ?, ?)",
                [(study_id, c.run_id, i) for i, c in enumerate(runs)],
            )
        return int(study_id)

    def statuses(self, run_ids: Iterable[str]) -> dict[str, str]:
        """Status of each of ``run_ids`` that the database knows."""
        ids = list(run_ids)
        out: dict[str, str] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for row in self.conn.execute(
                f"SELECT id, status FROM runs WHERE id IN ({marks})", chunk
            ):
                out[row["id"]] = row["status"]
        return out

    def mark_running(
        self, run_ids: Sequence[str], stack_size: int, environment: dict[str, object]
    ) -> None:
        """Record that ``run_ids`` started, clearing whatever an unfinished attempt left."""
        with self.conn:
            for table in _RESULT_TABLES:
                self.conn.executemany(
                    f"DELETE FROM {table} WHERE run_id = ?", [(r,) for r in run_ids]
                )
            self.conn.executemany(
                "UPDATE runs SET status='running', started_at=?, finished_at=NULL, seconds=NULL, "
                "diverged_step=NULL, error=NULL, stack_size=?, environment=? WHERE id=?",
                [(_now(), stack_size, json.dumps(environment), r) for r in run_ids],
            )

    def save_result(self, run_id: str, result: RunResult) -> None:
        """Write one finished run's metrics and final status in one transaction."""
        status = "diverged" if result.diverged else "done"
        rows = {
            "epochs": [[getattr(e, c) for c in _COLUMNS["epochs"]] for e in result.epochs],
            "steps": result.step_losses,
            "probes": result.probes,
            "evals": result.evals,
            "samples": result.samples,
        }
        with self.conn:
            for table, records in rows.items():
                self.conn.executemany(_insert(table), [(run_id, *map(_value, r)) for r in records])
            self.conn.execute(
                "UPDATE runs SET status=?, finished_at=?, seconds=?, diverged_step=? WHERE id=?",
                (status, _now(), result.seconds, result.diverged_step, run_id),
            )

    def mark_failed(self, run_ids: Sequence[str], error: str) -> None:
        """Record that an attempt at ``run_ids`` raised ``error``; they will be redone."""
        with self.conn:
            self.conn.executemany(
                "UPDATE runs SET status='failed', finished_at=?, error=? WHERE id=?",
                [(_now(), error, r) for r in run_ids],
            )

    # -- reading ------------------------------------------------------------------

    def study_names(self) -> list[str]:
        """Names of all studies, most recently updated last."""
        return [r[0] for r in self.conn.execute("SELECT name FROM studies ORDER BY updated_at, id")]

    def resolve_study(self, name: str | None) -> str:
        """``name`` if it exists, else the most recently updated study when ``name`` is None."""
        names = self.study_names()
        if not names:
            raise StoreError(f"{self.path}: holds no study yet")
        if name is None:
            return names[-1]
        if name not in names:
            raise StoreError(f"{self.path}: no study named {name!r} (has: {', '.join(names)})")
        return name

    def study(self, name: str) -> sqlite3.Row:
        """One study's row: its ``spec`` (JSON), ``created_at`` and ``updated_at``."""
        row = self.conn.execute("SELECT * FROM studies WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise StoreError(f"{self.path}: no study named {name!r}")
        return row

    def runs(self, study: str) -> list[sqlite3.Row]:
        """The runs of ``study`` in study order, with their configs and statuses."""
        return self.conn.execute(
            "SELECT r.* FROM runs r JOIN study_runs sr ON sr.run_id = r.id "
            "JOIN studies s ON s.id = sr.study_id WHERE s.name = ? ORDER BY sr.position",
            (study,),
        ).fetchall()

    def _per_run(self, table: str, study: str, order: str) -> list[sqlite3.Row]:
        return self.conn.execute(
            f"SELECT t.* FROM {table} t JOIN study_runs sr ON sr.run_id = t.run_id "
            f"JOIN studies s ON s.id = sr.study_id WHERE s.name = ? ORDER BY sr.position, {order}",
            (study,),
        ).fetchall()

    def epochs(self, study: str) -> list[sqlite3.Row]:
        """Per-epoch metrics of every run of ``study``, in study order then epoch."""
        return self._per_run("epochs", study, "t.epoch")

    def probes(self, study: str) -> list[sqlite3.Row]:
        """Probe measurements (step, probe, layer, name, value) of every run of ``study``."""
        return self._per_run("probes", study, "t.step, t.probe, t.layer, t.name")

    def evals(self, study: str) -> list[sqlite3.Row]:
        """Validation evaluations within epochs (step, epoch, seconds, loss, accuracy)."""
        return self._per_run("evals", study, "t.step")

    def samples(self, study: str) -> list[sqlite3.Row]:
        """The images generators drew (run_id, step, index, channels, pixels), per run."""
        return self._per_run("samples", study, 't.step, t."index"')

    def steps(self, study: str) -> list[sqlite3.Row]:
        """The kept per-step training losses (run_id, step, loss) of every run of ``study``."""
        return self._per_run("steps", study, "t.step")

    def step_losses(self, run_id: str) -> list[tuple[int, float | None]]:
        """The kept per-step training losses of one run."""
        return [
            (r[0], r[1])
            for r in self.conn.execute(
                "SELECT step, loss FROM steps WHERE run_id = ? ORDER BY step", (run_id,)
            )
        ]
