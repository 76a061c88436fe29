"""Fault drills on real MNIST: the driver killed (kill -9) at varied moments, two
processes sharing one database (one of them killed), a lease held by another machine,
a disk that fills mid-study, a pool worker killed. Each ends with every run trained, none lost, none
trained twice, and the same numbers as an uninterrupted run."""

from __future__ import annotations

import os
import resource
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from drills import RUNS, finish, numbers, runs, start, wait_for, write_study

from normlab import runtime
from normlab.app.api import run_study
from normlab.store.leases import Owner

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def study(tmp_path_factory, data_root):
    return write_study(tmp_path_factory.mktemp("drills"), data_root)


@pytest.fixture(scope="module")
def reference(study):
    """The uninterrupted run's numbers."""
    db = study.parent / "reference.db"
    finish(study, db)
    assert {s for s, _ in runs(db).values()} == {"done"}
    return numbers(db)


KILL_POINTS = {
    "while starting": None,
    "in the first unit": "status = 'running'",
    "after a unit was saved": "status = 'done'",
    "after half the units": "rowid IN (SELECT rowid FROM runs WHERE status = 'done' "
    "LIMIT 1 OFFSET 3)",
}


@pytest.mark.parametrize("moment", list(KILL_POINTS))
def test_a_killed_driver_resumes_with_nothing_lost_or_trained_twice(
    study, tmp_path, reference, moment
):
    db = tmp_path / "killed.db"
    proc = start(study, db)
    if KILL_POINTS[moment] is None:
        time.sleep(0.5)
    else:
        wait_for(db, KILL_POINTS[moment])
    proc.kill()
    proc.wait()
    before = runs(db) if db.exists() else {}
    finish(study, db)
    after = runs(db)
    assert len(after) == RUNS and {s for s, _ in after.values()} == {"done"}  # none lost
    for run, (status, attempts) in before.items():
        if status == "done":  # finished before the kill: not trained again
            assert after[run] == (status, attempts) == ("done", 1)
    assert numbers(db) == reference


def test_two_processes_split_a_study_and_train_each_run_once(study, tmp_path, reference):
    db = tmp_path / "shared.db"
    first, second = start(study, db), start(study, db)
    wait_for(db, "status = 'done'")  # while they write, a reader gets what is saved so far
    shown = subprocess.run([sys.executable, "-m", "normlab", "show", "--db", str(db)],
                           capture_output=True, text=True, timeout=60)  # fmt: skip
    assert shown.returncode == 0 and "quick-check" in shown.stdout, shown.stderr
    outputs = [p.communicate(timeout=120) for p in (first, second)]
    assert [p.returncode for p in (first, second)] == [0, 0], outputs
    assert set(runs(db).values()) == {("done", 1)}  # every run trained exactly once
    assert numbers(db) == reference


def test_when_one_of_two_processes_dies_the_other_finishes_its_units(study, tmp_path, reference):
    db = tmp_path / "shared.db"
    victim = start(study, db)
    wait_for(db, "status = 'running'")
    survivor = start(study, db)
    wait_for(db, f"status = 'running' AND owner LIKE '%/{victim.pid}/%'")
    victim.kill()
    victim.wait()
    _, err = survivor.communicate(timeout=120)
    assert survivor.returncode == 0, err
    state = runs(db)
    assert {s for s, _ in state.values()} == {"done"}
    # the unit the victim was training was trained again, no other
    assert sorted(a for _, a in state.values()) in ([1] * RUNS, [1] * (RUNS - 1) + [2])
    assert numbers(db) == reference


def test_a_lease_held_elsewhere_is_waited_for_then_taken_over(study, tmp_path, reference):
    """A process on another machine claimed a unit and stopped renewing its lease: this
    one trains the rest, waits for the lease to expire, then trains that unit too."""
    db = tmp_path / "leased.db"
    finish(study, db)  # all done; now pretend one run is mid-training elsewhere
    conn = sqlite3.connect(db)
    run = conn.execute("SELECT id FROM runs LIMIT 1").fetchone()[0]
    owner = Owner("another-machine", 4242, "beef")
    with conn:
        conn.execute("DELETE FROM epochs WHERE run_id = ?", (run,))
        conn.execute("DELETE FROM steps WHERE run_id = ?", (run,))
        conn.execute(
            "UPDATE runs SET status='running', owner=?, lease_until=? WHERE id=?",
            (str(owner), time.time() + 3, run),
        )
    conn.close()
    begun = time.monotonic()
    try:
        report = run_study(study, db=db, max_stack=1, threads=1, data_dir=study.parent / "data")
    finally:
        runtime.set_threads(None)  # the other tests in this process use every core
    assert time.monotonic() - begun >= 2.5  # it waited for the lease
    assert (report.finished_before, report.trained) == (RUNS - 1, 1)
    assert numbers(db) == reference


def _disk_of(size: int):
    """A preexec function: files this process writes may grow to ``size`` bytes (what a
    full disk does to SQLite, without needing one)."""

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # fail the write, do not kill
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))

    return limit


def test_a_full_disk_stops_the_study_with_one_line_and_keeps_what_was_saved(
    study, tmp_path, reference
):
    db = tmp_path / "full.db"
    proc = start(study, db, preexec_fn=_disk_of(160_000))
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, err
    message = err.strip().splitlines()[-1]
    assert message.startswith(f"error: {db}: cannot write results (")
    assert "Traceback" not in err
    kept = runs(db)
    done = [r for r, (s, _) in kept.items() if s == "done"]
    assert 0 < len(done) < RUNS  # the disk filled mid-study
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    conn.close()
    finish(study, db)  # space again: the rest trains, the kept runs are not redone
    assert all(runs(db)[r] == ("done", 1) for r in done)
    assert numbers(db) == reference


def test_the_pool_executor_gives_the_local_numbers(study, tmp_path, reference):
    db = tmp_path / "pool.db"
    finish(study, db, "--executor", "pool")  # 1 thread per unit, as the reference
    assert set(runs(db).values()) == {("done", 1)}
    assert numbers(db) == reference


def _pool_workers(driver: int) -> list[int]:
    """The driver's worker processes (started by multiprocessing's spawn)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text() if entry.name.isdigit() else ""
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if stat and int(stat.rsplit(")", 1)[1].split()[1]) == driver and b"spawn_main" in command:
            found.append(int(entry.name))
    return found


def test_a_pool_worker_killed_fails_its_units_and_a_rerun_finishes(study, tmp_path, reference):
    db = tmp_path / "pool-killed.db"
    driver = start(study, db, "--executor", "pool")
    wait_for(db, "status = 'running'")  # a unit was handed to the pool, which starts
    deadline = time.monotonic() + 60
    while not (workers := _pool_workers(driver.pid)) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert workers, "the pool started no worker"
    os.kill(workers[0], signal.SIGKILL)
    out, err = driver.communicate(timeout=120)
    state = runs(db)
    if driver.returncode == 1:  # the killed worker held a unit: failed, with the reason
        assert "a worker process died" in out + err
        assert "failed" in {s for s, _ in state.values()}
    else:  # it had finished its last unit: nothing was lost
        assert driver.returncode == 0, err
    finish(study, db)
    assert {s for s, _ in runs(db).values()} == {"done"}
    assert numbers(db) == reference
