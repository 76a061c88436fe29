"""What the fault drills share: a small study on real MNIST, run by `normlab run` in
processes of their own, and readers of the database it fills."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

# the README's quick check: 8 narrow MLPs, one epoch each (a drill also keeps it valid)
STUDY = (Path(__file__).resolve().parents[1] / "examples" / "quick-check.toml").read_text()
RUNS = 8  # one unit each (--max-stack 1): many moments to be killed at
ARGS = ("--max-stack", "1", "--threads", "1")


def write_study(folder: Path, data_root: Path, text: str = STUDY) -> Path:
    """The study file in ``folder``, with the data beside it for the processes."""
    path = folder / "drill.toml"
    path.write_text(text)
    (folder / "data").symlink_to(data_root)
    return path


def start(study: Path, db: Path, *options: str, **popen) -> subprocess.Popen:
    """`normlab run` of ``study`` into ``db`` with ``ARGS`` and ``options``, started."""
    command = [sys.executable, "-m", "normlab", "run", str(study), "--db", str(db), *ARGS]
    command += ["--data-dir", str(study.parent / "data"), *options]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **popen)  # fmt: skip


def finish(study: Path, db: Path, *options: str) -> str:
    """`normlab run` to the end; its output (it must succeed)."""
    proc = start(study, db, *options)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return out + err


def numbers(db: Path) -> list[tuple]:
    """Every metric of every run, as stored (timings left out)."""
    conn = sqlite3.connect(db)
    epochs = conn.execute(
        "SELECT run_id, epoch, train_loss, train_acc, val_loss, val_acc, test_loss, test_acc "
        "FROM epochs ORDER BY run_id, epoch"
    ).fetchall()
    steps = conn.execute("SELECT run_id, step, loss FROM steps ORDER BY run_id, step").fetchall()
    conn.close()
    return epochs + steps


def runs(db: Path) -> dict[str, tuple[str, int]]:
    """Each run's status and how many times it was claimed."""
    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT id, status, attempts FROM runs").fetchall()
    conn.close()
    return {r[0]: (r[1], r[2]) for r in rows}


def wait_for(db: Path, condition: str, timeout: float = 60.0) -> None:
    """Poll ``db`` until the runs table has a row where ``condition`` holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if db.exists():
            try:
                conn = sqlite3.connect(db)
                hit = conn.execute(f"SELECT 1 FROM runs WHERE {condition}").fetchone()
                conn.close()
                if hit:
                    return
            except sqlite3.OperationalError:  # not created yet
                pass
        time.sleep(0.01)
    raise AssertionError(f"no run with {condition} within {timeout} s")
