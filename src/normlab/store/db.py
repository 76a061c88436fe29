"""One SQLite file holds a collection of studies and every run they need.

Runs are keyed by their configuration's digest and shared between studies. A unit's
results are written in one transaction when its training finishes; a run left
``queued``, ``failed`` or ``running`` without a live lease (``store.leases``) is redone
the next time a study needs it, which is what makes an interrupted study resumable.
The tables and their upgrades are in ``store.schema``.
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import fields
from datetime import UTC, datetime
from pathlib import Path

from normlab.store.leases import Owner
from normlab.store.schema import (
    COLUMNS,
    RESULT_TABLES,
    SCHEMA_VERSION,
    STATUSES,
    StoreError,
    migrate,
)
from normlab.types import (
    FINISHED,
    EpochMetrics,
    EvalPoint,
    ProbeRow,
    RunIdentity,
    RunResult,
    SampleImage,
    Status,
    StepLoss,
    StoredRun,
    StoredStudy,
)

__all__ = ["FINISHED", "SCHEMA_VERSION", "STATUSES", "Store", "StoreError"]


_WAIT_SECONDS = 60.0  # how long a process waits for another's write lock


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _value(x: object) -> object:
    # SQLite would turn NaN into NULL anyway; say so explicitly. Inf is kept.
    return None if isinstance(x, float) and math.isnan(x) else x


def _insert(table: str) -> str:
    columns = [f'"{c}"' for c in ("run_id", *COLUMNS[table])]
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


class Store:
    """A normlab SQLite database (created on first use)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Several processes may share the file: writers queue for up to a minute rather
        # than fail with "database is locked", and every write transaction takes the write
        # lock when it begins (IMMEDIATE), so that none fails upgrading a read lock.
        self.conn = sqlite3.connect(self.path, timeout=_WAIT_SECONDS, isolation_level="IMMEDIATE")
        self.conn.row_factory = sqlite3.Row
        self.conn.execute("PRAGMA foreign_keys = ON")
        self._open()

    def _open(self) -> None:
        """Switch to WAL and create or upgrade the tables. When several processes open a
        new file at once, one of them may be told "locked" at once instead of waiting
        (SQLite's answer to a lock it could deadlock on): it tries again."""
        deadline = time.monotonic() + _WAIT_SECONDS
        while True:
            try:
                self.conn.execute("PRAGMA journal_mode = WAL")
                migrate(self.conn, self.path)
                return
            except sqlite3.OperationalError as err:
                if "locked" not in str(err) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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

    def claim(
        self,
        run_ids: Sequence[str],
        owner: Owner,
        seconds: float,
        environment: dict[str, object],
        chain: bool = False,
    ) -> bool:
        """Lease ``run_ids`` (one unit) to ``owner`` for ``seconds``, clearing whatever an
        unfinished attempt left; False, changing nothing, if another live owner holds one
        of them or one is finished (all of them, for a ``chain``, which is redone whole)."""
        now = time.time()
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")  # read and write under one lock
            rows = self._rows(run_ids, "status, owner, lease_until")
            finished = [r["status"] in FINISHED for r in rows]
            if all(finished) or (any(finished) and not chain):
                return False
            for r in rows:
                held = r["status"] == "running" and r["owner"] and (r["lease_until"] or 0) > now
                if held and r["owner"] != str(owner) and Owner.parse(r["owner"]).alive():
                    return False
            for table in RESULT_TABLES:
                self.conn.executemany(
                    f"DELETE FROM {table} WHERE run_id = ?", [(r,) for r in run_ids]
                )
            self.conn.executemany(
                "UPDATE runs SET status='running', started_at=?, finished_at=NULL, seconds=NULL, "
                "diverged_step=NULL, error=NULL, stack_size=?, environment=?, owner=?, "
                "lease_until=?, attempts=attempts+1, progress=0 WHERE id=?",
                [(_now(), len(run_ids), json.dumps(environment), str(owner), now + seconds, r)
                 for r in run_ids],
            )  # fmt: skip
        return True

    def _rows(self, run_ids: Sequence[str], columns: str) -> list[sqlite3.Row]:
        marks = ",".join("?" * len(run_ids))
        return self.conn.execute(
            f"SELECT id, {columns} FROM runs WHERE id IN ({marks})", list(run_ids)
        ).fetchall()

    def renew(self, owner: Owner, seconds: float) -> int:
        """Extend every lease ``owner`` holds to ``seconds`` from now; how many runs."""
        with self.conn:
            return self.conn.execute(
                "UPDATE runs SET lease_until=? WHERE owner=? AND status='running'",
                (time.time() + seconds, str(owner)),
            ).rowcount

    def record_progress(self, owner: Owner, steps: dict[str, int]) -> None:
        """Note the optimizer steps each run of ``steps`` has taken in ``owner``'s attempt
        (what a live report shows); runs ``owner`` no longer holds are left alone."""
        with self.conn:
            self.conn.executemany(
                "UPDATE runs SET progress=? WHERE id=? AND owner=? AND status='running'",
                [(n, run_id, str(owner)) for run_id, n in steps.items()],
            )

    def release(self, owner: Owner) -> None:
        """End ``owner``'s leases on runs it did not finish (they are redone by whoever
        comes next, without waiting for the leases to expire)."""
        with self.conn:
            self.conn.execute(
                "UPDATE runs SET lease_until=NULL WHERE owner=? AND status='running'", (str(owner),)
            )

    def save_results(self, owner: Owner, results: Sequence[tuple[str, RunResult]]) -> bool:
        """Write one unit's finished runs (metrics and final status) in one transaction,
        if ``owner`` still holds all of their leases; False, writing nothing, if not."""
        ids = [run_id for run_id, _ in results]
        with self.conn:
            self.conn.execute("BEGIN IMMEDIATE")
            rows = self._rows(ids, "status, owner")
            if len(rows) < len(ids) or any(
                r["status"] != "running" or r["owner"] != str(owner) for r in rows
            ):
                return False
            for run_id, result in results:
                self._write(run_id, result)
        return True

    def _write(self, run_id: str, result: RunResult) -> None:
        rows = {
            "epochs": [[getattr(e, c) for c in COLUMNS["epochs"]] for e in result.epochs],
            "steps": result.step_losses,
            "probes": result.probes,
            "evals": result.evals,
            "samples": result.samples,
        }
        for table, records in rows.items():
            self.conn.executemany(_insert(table), [(run_id, *map(_value, r)) for r in records])
        self.conn.execute(
            "UPDATE runs SET status=?, finished_at=?, seconds=?, diverged_step=?, owner=NULL, "
            "lease_until=NULL, progress=NULL WHERE id=?",
            ("diverged" if result.diverged else "done", _now(), result.seconds,
             result.diverged_step, run_id),
        )  # fmt: skip

    def mark_failed(self, run_ids: Sequence[str], error: str) -> None:
        """Record that an attempt at ``run_ids`` raised ``error``, ending its lease; they
        will be redone."""
        with self.conn:
            self.conn.executemany(
                "UPDATE runs SET status='failed', finished_at=?, error=?, owner=NULL, "
                "lease_until=NULL, progress=NULL WHERE id=?",
                [(_now(), error, r) for r in run_ids],
            )

    # -- reading ------------------------------------------------------------------

    def run_states(self, run_ids: Iterable[str]) -> dict[str, StoredRun]:
        """Each of ``run_ids`` the database knows, as stored (its status, a running
        attempt's progress and lease, ...)."""
        ids, out = list(run_ids), {}
        for start in range(0, len(ids), 500):
            for row in self._rows(ids[start : start + 500], _RUN_COLUMNS):
                out[row["id"]] = _run(row)
        return out

    def statuses(self, run_ids: Iterable[str]) -> dict[str, Status]:
        """Status of each of ``run_ids`` that the database knows."""
        return {run_id: run.status for run_id, run in self.run_states(run_ids).items()}

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

    def study(self, name: str) -> StoredStudy:
        """One study as registered: its declaration and when."""
        row = self.conn.execute("SELECT * FROM studies WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise StoreError(f"{self.path}: no study named {name!r}")
        return StoredStudy(name, json.loads(row["spec"]), row["created_at"], row["updated_at"])

    def runs(self, study: str) -> list[StoredRun]:
        """The runs of ``study`` in study order, with their configs and statuses."""
        return [_run(r) for r in self.conn.execute(
            "SELECT r.* FROM runs r JOIN study_runs sr ON sr.run_id = r.id "
            "JOIN studies s ON s.id = sr.study_id WHERE s.name = ? ORDER BY sr.position",
            (study,),
        )]  # fmt: skip

    def _per_run(self, table: str, study: str, order: str) -> dict[str, list]:
        record = _RECORDS[table]
        columns = ", ".join(f't."{c}"' for c in COLUMNS[table])
        out: dict[str, list] = {}
        for run_id, *values in self.conn.execute(
            f"SELECT t.run_id, {columns} FROM {table} t JOIN study_runs sr "
            "ON sr.run_id = t.run_id JOIN studies s ON s.id = sr.study_id "
            f"WHERE s.name = ? ORDER BY sr.position, {order}",
            (study,),
        ):
            out.setdefault(run_id, []).append(record(*values))
        return out

    def epochs(self, study: str) -> dict[str, list[EpochMetrics]]:
        """Per-epoch metrics of every run of ``study`` that has some, by run id, in study
        order then epoch (a value SQLite could not keep as a number reads None)."""
        return self._per_run("epochs", study, "t.epoch")

    def probes(self, study: str) -> dict[str, list[ProbeRow]]:
        """Probe measurements of every run of ``study``, by run id, in step order."""
        order = "t.step, t.probe, t.layer, t.name, t.unit, t.quantile"
        return self._per_run("probes", study, order)

    def evals(self, study: str) -> dict[str, list[EvalPoint]]:
        """Validation evaluations within epochs of every run of ``study``, by run id."""
        return self._per_run("evals", study, "t.step")

    def samples(self, study: str) -> dict[str, list[SampleImage]]:
        """The images generators drew, by run id, in step and index order."""
        return self._per_run("samples", study, 't.step, t."index"')

    def steps(self, study: str) -> dict[str, list[StepLoss]]:
        """The kept per-step training losses of every run of ``study``, by run id."""
        return self._per_run("steps", study, "t.step")


_RECORDS = {
    "epochs": EpochMetrics,
    "steps": StepLoss,
    "probes": ProbeRow,
    "evals": EvalPoint,
    "samples": SampleImage,
}
_RUN_COLUMNS = ", ".join(f.name for f in fields(StoredRun) if f.name != "id")


def _run(row: sqlite3.Row) -> StoredRun:
    values = {f.name: row[f.name] for f in fields(StoredRun)}
    return StoredRun(**{**values, "status": Status(row["status"])})
