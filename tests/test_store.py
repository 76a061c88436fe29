import gzip
import sqlite3
import subprocess
import sys
import time
from dataclasses import astuple
from pathlib import Path

import pytest

from normlab.experiments.driver import pending_units
from normlab.spec.config import RunConfig
from normlab.store.db import SCHEMA_VERSION, Store, StoreError
from normlab.store.leases import Heartbeat, Owner
from normlab.types import (
    EpochMetrics,
    EvalPoint,
    ProbeRow,
    RunResult,
    SampleImage,
    Status,
    StepLoss,
)

ME = Owner.this_process()
DATA = Path(__file__).parent / "data"


def _result(diverged_step=None):
    r = RunResult(diverged_step=diverged_step, seconds=1.5)
    r.epochs.append(EpochMetrics(1, 0.5, 0.8, 0.4, 0.85, float("nan"), 0.84, 1.5, 0.1))
    r.step_losses.extend([StepLoss(1, 2.3), StepLoss(2, float("inf"))])
    return r


def test_register_save_and_resume(tmp_path):
    configs = [RunConfig(seed=s, batch_size=b) for s in range(2) for b in (32, 64)]
    with Store(tmp_path / "a.db") as store:
        store.register_study("s", {"x": 1}, configs)
        units, finished = pending_units(store, configs)
        assert finished == 0 and sorted(len(u.configs) for u in units) == [2, 2]
        first = units[0]
        assert store.claim(first.run_ids, ME, 60, {"device": "cpu"})
        pairs = [(first.run_ids[0], _result()), (first.run_ids[1], _result(diverged_step=2))]
        assert store.save_results(ME, pairs)
        # an interrupted unit: claimed, never saved, its owner gone
        assert store.claim(units[1].run_ids, ME, 60, {"device": "cpu"})
        store.release(ME)
    with Store(tmp_path / "a.db") as store:  # a new process resumes
        units, finished = pending_units(store, configs)
        assert finished == 2 and [u.run_ids for u in units] == [list(units[0].run_ids)]
        statuses = store.statuses(c.run_id for c in configs)
        assert sorted(statuses.values()) == ["diverged", "done", "running", "running"]
        e = [m for ms in store.epochs("s").values() for m in ms]
        assert len(e) == 2 and e[0].test_loss is None and e[0].test_acc == 0.84
        assert isinstance(e[0], EpochMetrics) and statuses[first.run_ids[0]] is Status.DONE
        kept = store.steps("s")[first.run_ids[0]]
        assert kept == [StepLoss(1, 2.3), StepLoss(2, float("inf"))]


def test_runs_are_shared_between_studies_and_restarted_cleanly(tmp_path):
    config = RunConfig(seed=3)
    with Store(tmp_path / "b.db") as store:
        store.register_study("one", {}, [config])
        assert store.claim([config.run_id], ME, 60, {})
        assert store.save_results(ME, [(config.run_id, _result())])
        store.register_study("two", {}, [config, RunConfig(seed=4)])
        assert pending_units(store, [config, RunConfig(seed=4)])[1] == 1
        assert not store.claim([config.run_id], ME, 60, {})  # finished: not trained twice
        legs = [config.run_id, RunConfig(seed=4).run_id]
        assert store.claim(legs, ME, 60, {}, chain=True)  # a chain half done is redone whole
        assert store.epochs("one") == {} and store.steps("one") == {}  # the old attempt's
        assert store.study_names() == ["one", "two"]
        assert store.resolve_study(None) == "two"
        with pytest.raises(StoreError, match="no study named 'three'"):
            store.resolve_study("three")


def test_failed_runs_keep_their_error(tmp_path):
    config = RunConfig()
    with Store(tmp_path / "c.db") as store:
        store.register_study("s", {}, [config])
        store.mark_failed([config.run_id], "ValueError: boom")
        run = store.runs("s")[0]
        assert run.status is Status.FAILED and run.error == "ValueError: boom"
        assert len(pending_units(store, [config])[0]) == 1


def test_schema_version_and_foreign_databases(tmp_path):
    Store(tmp_path / "d.db").close()
    conn = sqlite3.connect(tmp_path / "d.db")
    conn.execute("UPDATE meta SET value = '99'")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match=f"schema version 99, this normlab reads {SCHEMA_VERSION}"):
        Store(tmp_path / "d.db")
    conn = sqlite3.connect(tmp_path / "e.db")
    conn.execute("CREATE TABLE other (x)")
    conn.close()
    with pytest.raises(StoreError, match="not a normlab database"):
        Store(tmp_path / "e.db")


def test_probe_and_eval_rows_round_trip(tmp_path):
    config = RunConfig(probes=("ics",), eval_every=10)
    result = _result()
    result.probes.extend(
        [ProbeRow(10, "ics", 1, "distance", 0.25), ProbeRow(10, "ics", 1, "cosine", float("nan")),
         ProbeRow(10, "ics", 1, "quantile", 0.5, unit=3, quantile=0.85)]
    )  # fmt: skip
    result.evals.append(EvalPoint(10, 0.5, 0.75, 0.3, 0.91))
    result.samples.append(SampleImage(10, 0, 3, bytes(range(256)) * 3))
    with Store(tmp_path / "p.db") as store:
        store.register_study("s", {}, [config])
        assert store.claim([config.run_id], ME, 60, {})
        assert store.save_results(ME, [(config.run_id, result)])
        assert store.probes("s") == {config.run_id: [
            ProbeRow(10, "ics", 1, "cosine", None), ProbeRow(10, "ics", 1, "distance", 0.25),
            ProbeRow(10, "ics", 1, "quantile", 0.5, unit=3, quantile=0.85)]}  # fmt: skip
        assert store.evals("s") == {config.run_id: [EvalPoint(10, 0.5, 0.75, 0.3, 0.91)]}
        assert store.samples("s") == {config.run_id: [result.samples[0]]}
        with store.conn:  # a retry clears what the last try left
            store.conn.execute("UPDATE runs SET status = 'failed'")
        assert store.claim([config.run_id], ME, 60, {})
        assert store.probes("s") == store.evals("s") == store.samples("s") == {}


@pytest.mark.parametrize(
    ("version", "dropped"),
    [(1, "probes, evals, samples"), (2, "samples"), (3, ""), (4, ""), (5, "")],
)
def test_an_older_database_gains_the_later_tables(tmp_path, version, dropped):
    path = tmp_path / "old.db"
    with Store(path) as store:
        store.register_study("s", {}, [RunConfig()])
    conn = sqlite3.connect(path)
    conn.executescript("".join(f"DROP TABLE {t};" for t in dropped.split(", ") if t))
    if "probes" not in dropped:  # version 2's probes, before unit and quantile (version 6)
        conn.executescript(
            "DROP TABLE probes; CREATE TABLE probes (run_id TEXT NOT NULL REFERENCES runs(id) "
            "ON DELETE CASCADE, step INTEGER NOT NULL, probe TEXT NOT NULL, layer INTEGER NOT "
            "NULL, name TEXT NOT NULL, value REAL, PRIMARY KEY (run_id, step, probe, layer, "
            "name)) WITHOUT ROWID;"
        )
    if version < 5:
        conn.execute("ALTER TABLE runs DROP COLUMN progress")  # what version 5 added
    if version < 4:
        conn.executescript(  # what version 4 added: leases
            "DROP INDEX runs_owner; ALTER TABLE runs DROP COLUMN owner; "
            "ALTER TABLE runs DROP COLUMN lease_until; ALTER TABLE runs DROP COLUMN attempts;"
        )
    conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(version),))
    conn.commit()
    conn.close()
    with Store(path) as store:
        assert store.probes("s") == store.samples("s") == {} and store.study_names() == ["s"]
        assert store.claim([RunConfig().run_id], ME, 60, {})
        assert store.runs("s")[0].attempts == 1 and store.runs("s")[0].progress == 0
    version = sqlite3.connect(path).execute("SELECT value FROM meta").fetchone()[0]
    assert int(version) == SCHEMA_VERSION == 6


def test_a_lease_is_held_renewed_lost_and_taken_over(tmp_path):
    """Claims between owners: a live lease blocks, an expired one or a dead owner's does
    not, and results are saved only under a lease still held."""
    configs = [RunConfig(seed=s) for s in range(3)]
    ids = [c.run_id for c in configs]
    other = Owner("another-machine", 1, "cafe")  # alive as far as this machine can tell
    with Store(tmp_path / "l.db") as store:
        store.register_study("s", {}, configs)
        assert store.claim(ids[:1], other, 60, {})
        assert not store.claim(ids[:2], ME, 60, {})  # all or nothing: ids[1] stays free
        assert store.statuses(ids[1:2]) == {ids[1]: Status.QUEUED}
        assert store.claim(ids[1:2], ME, 0.2, {})
        assert store.renew(ME, 60) == 1  # the heartbeat: 0.2 s becomes a minute
        time.sleep(0.3)
        assert not store.claim(ids[1:2], other, 60, {})
        store.conn.execute("UPDATE runs SET lease_until = 0 WHERE id = ?", (ids[0],))
        store.conn.commit()  # the other machine stopped renewing: its lease expired
        assert store.claim(ids[:1], ME, 60, {})
        assert not store.save_results(other, [(ids[0], _result())])  # it lost the lease
        assert store.save_results(ME, [(ids[0], _result())])
        dead = Owner(ME.host, _dead_pid(), "dead")  # a killed process on this machine
        store.conn.execute("UPDATE runs SET owner = ? WHERE id = ?", (str(dead), ids[1]))
        store.conn.commit()
        assert store.claim(ids[1:2], ME, 60, {})  # taken over at once, lease or not
        runs = {r.id: r for r in store.runs("s")}
        assert [runs[i].attempts for i in ids] == [2, 2, 0]
        assert runs[ids[0]].owner is None and runs[ids[0]].status is Status.DONE


def _dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    return int(done.stdout)


def test_a_heartbeat_keeps_a_lease_while_its_block_runs(tmp_path):
    config, other = RunConfig(), Owner("another-machine", 1, "cafe")
    with Store(tmp_path / "h.db") as store:
        store.register_study("s", {}, [config])
        assert store.claim([config.run_id], ME, 0.2, {})
        with Heartbeat(tmp_path / "h.db", ME, seconds=0.4):
            time.sleep(0.6)  # three times the first lease: renewed every 0.1 s
            assert not store.claim([config.run_id], other, 60, {})
        time.sleep(0.5)  # no heartbeat: the lease runs out
        assert store.claim([config.run_id], other, 60, {})


def test_processes_opening_a_new_database_at_once_all_get_in(tmp_path):
    """SQLite may answer "locked" at once, not after waiting, to one of several
    processes creating a file together (it happened 3 times in 80 before the retry)."""
    code = "import sys\nfrom normlab.store.db import Store\nStore(sys.argv[1]).close()"
    for round_ in range(5):
        db = tmp_path / f"new{round_}.db"
        procs = [subprocess.Popen([sys.executable, "-c", code, str(db)], stderr=subprocess.PIPE,
                                  text=True) for _ in range(6)]  # fmt: skip
        errors = [p.communicate()[1] for p in procs]
        assert [p.returncode for p in procs] == [0] * 6, errors


def _unpacked(name: str) -> tuple[str, int, float]:
    """A version-5 probe name as version 6 stores it: "p15_unit3" is the 0.15 quantile
    of unit 3."""
    if name.startswith("p") and "_unit" in name:
        q, unit = name[1:].split("_unit")
        return "quantile", int(unit), int(q) / 100
    return name, -1, -1.0


def test_a_database_written_by_schema_5_reads_back_the_same(tmp_path):
    """tests/data/schema5.db.gz was written by normlab before version 6 (how: its
    make_schema5.py): it opens, upgrades, reads back every number it held, and every
    stored configuration still has its stored run id."""
    path = tmp_path / "schema5.db"
    path.write_bytes(gzip.decompress((DATA / "schema5.db.gz").read_bytes()))
    raw = sqlite3.connect(path)
    old_probes = raw.execute("SELECT run_id, step, probe, layer, name, value FROM probes")
    old_probes = old_probes.fetchall()
    old_epochs = raw.execute("SELECT * FROM epochs ORDER BY run_id, epoch").fetchall()
    configs = raw.execute("SELECT id, config FROM runs").fetchall()
    raw.close()
    assert len(old_probes) == 470 and len(configs) == 67
    with Store(path) as store:
        probes = [(run_id, r) for run_id, rows in store.probes("v5-trained").items() for r in rows]
        epochs = store.epochs("v5-trained")
        assert store.runs("v5-trained")[0].status is Status.DONE
    assert len(probes) == len(old_probes)
    assert {(i, r.step, r.probe, r.layer, r.name, r.unit, r.quantile, r.value)
            for i, r in probes} == {
        (i, step, probe, layer, *_unpacked(name), value)
        for i, step, probe, layer, name, value in old_probes
    }  # fmt: skip
    assert sum(r.name == "quantile" for _, r in probes) == 180
    assert [(i, *astuple(e)) for i, es in sorted(epochs.items()) for e in es] == old_epochs
    for run_id, config in configs:  # the GAN's, the CNN's and the MLP's
        assert RunConfig.from_stored(config).run_id == run_id
