"""The database's tables, and the upgrade of a file an older normlab wrote.

Each version's tables are added by one script; a new file runs them all in order, an
older file the ones it lacks, so both end with the same tables.
"""

from __future__ import annotations

import sqlite3
from dataclasses import fields
from pathlib import Path

from normlab.types import (
    EpochMetrics,
    EvalPoint,
    ProbeRow,
    SampleImage,
    Status,
    StepLoss,
)


class StoreError(RuntimeError):
    """The database cannot be used (wrong schema version, not a normlab store, or it
    cannot be written)."""


SCHEMA_VERSION = 6
STATUSES = tuple(s.value for s in Status)  # plain strings: the schema writes them

_SCHEMA_V1 = f"""
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
RESULT_TABLES = ("epochs", "steps", "probes", "evals", "samples")
# Each result table's columns after run_id, by the name of the contract's field.
COLUMNS = {
    "epochs": tuple(f.name for f in fields(EpochMetrics)),
    "steps": StepLoss._fields,
    "probes": ProbeRow._fields,
    "evals": EvalPoint._fields,
    "samples": SampleImage._fields,
}
# Version 4 added leases: which process trains a running run, until when (store.leases).
_SCHEMA_V4 = """
ALTER TABLE runs ADD COLUMN owner TEXT;
ALTER TABLE runs ADD COLUMN lease_until REAL;
ALTER TABLE runs ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
CREATE INDEX runs_owner ON runs (owner);
"""
# Version 5 added a running run's progress: the optimizer steps its attempt has taken,
# written by the driver every few seconds, read by the live report.
_SCHEMA_V5 = """
ALTER TABLE runs ADD COLUMN progress INTEGER;
"""
# Version 6 gave a probe value's unit and quantile columns of their own, where version 5
# packed them into its name ("p15_unit3": the 15th percentile of unit 3). The table is
# rebuilt (its key grows) and such names are unpacked into name "quantile".
_SCHEMA_V6 = """
CREATE TABLE probes_v6 (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    step INTEGER NOT NULL,
    probe TEXT NOT NULL,
    layer INTEGER NOT NULL,
    name TEXT NOT NULL,
    unit INTEGER NOT NULL DEFAULT -1,
    quantile REAL NOT NULL DEFAULT -1.0,
    value REAL,
    PRIMARY KEY (run_id, step, probe, layer, name, unit, quantile)
) WITHOUT ROWID;
INSERT INTO probes_v6 (run_id, step, probe, layer, name, value)
    SELECT run_id, step, probe, layer, name, value FROM probes
    WHERE NOT name GLOB 'p[0-9]*_unit[0-9]*';
INSERT INTO probes_v6
    SELECT run_id, step, probe, layer, 'quantile',
           CAST(substr(name, instr(name, '_unit') + 5) AS INTEGER),
           CAST(substr(name, 2, instr(name, '_unit') - 2) AS INTEGER) / 100.0, value
    FROM probes WHERE name GLOB 'p[0-9]*_unit[0-9]*';
DROP TABLE probes;
ALTER TABLE probes_v6 RENAME TO probes;
"""
_SCRIPTS = (_SCHEMA_V1, _SCHEMA_V2, _SCHEMA_V3, _SCHEMA_V4, _SCHEMA_V5, _SCHEMA_V6)


def migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Create the tables in an empty database or add what an older version lacks."""
    if _version(conn, path) == SCHEMA_VERSION:
        return
    # Under the write lock, and looked at again: two processes may open a new file at once.
    conn.execute("BEGIN IMMEDIATE")
    try:
        for script in _SCRIPTS[_version(conn, path) :]:
            for statement in filter(str.strip, script.split(";")):
                conn.execute(statement)
        conn.execute(
            "INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
        )
    except BaseException:
        conn.rollback()
        raise
    conn.commit()


def _version(conn: sqlite3.Connection, path: Path) -> int:
    """The file's schema version (0 when empty); StoreError when it is not normlab's."""
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    if not tables:
        return 0
    if "meta" not in tables:
        raise StoreError(f"{path}: not a normlab database (no meta table)")
    row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    version = int(row[0]) if row else 0
    if not 1 <= version <= SCHEMA_VERSION:
        raise StoreError(f"{path}: schema version {version}, this normlab reads {SCHEMA_VERSION}")
    return version
