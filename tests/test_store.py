import sqlite3

import pytest

from normlab.experiments.config import RunConfig
from normlab.experiments.runner import pending_units
from normlab.store.db import SCHEMA_VERSION, Store, StoreError
from normlab.types import EpochMetrics, EvalPoint, ProbeRow, RunResult, SampleImage, StepLoss


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
        store.mark_running(first.run_ids, 2, {"device": "cpu"})
        store.save_result(first.run_ids[0], _result())
        store.save_result(first.run_ids[1], _result(diverged_step=2))
        # an interrupted unit: marked running, never saved
        store.mark_running(units[1].run_ids, 2, {"device": "cpu"})
    with Store(tmp_path / "a.db") as store:  # a new process resumes
        units, finished = pending_units(store, configs)
        assert finished == 2 and [u.run_ids for u in units] == [list(units[0].run_ids)]
        statuses = store.statuses(c.run_id for c in configs)
        assert sorted(statuses.values()) == ["diverged", "done", "running", "running"]
        e = store.epochs("s")
        assert len(e) == 2 and e[0]["test_loss"] is None and e[0]["test_acc"] == 0.84
        assert store.step_losses(first.run_ids[0]) == [(1, 2.3), (2, float("inf"))]


def test_runs_are_shared_between_studies_and_restarted_cleanly(tmp_path):
    config = RunConfig(seed=3)
    with Store(tmp_path / "b.db") as store:
        store.register_study("one", {}, [config])
        store.mark_running([config.run_id], 1, {})
        store.save_result(config.run_id, _result())
        store.register_study("two", {}, [config, RunConfig(seed=4)])
        assert pending_units(store, [config, RunConfig(seed=4)])[1] == 1
        store.mark_running([config.run_id], 1, {})  # redo: old rows are cleared
        assert store.epochs("one") == [] and store.step_losses(config.run_id) == []
        assert store.study_names() == ["one", "two"]
        assert store.resolve_study(None) == "two"
        with pytest.raises(StoreError, match="no study named 'three'"):
            store.resolve_study("three")


def test_failed_runs_keep_their_error(tmp_path):
    config = RunConfig()
    with Store(tmp_path / "c.db") as store:
        store.register_study("s", {}, [config])
        store.mark_failed([config.run_id], "ValueError: boom")
        row = store.runs("s")[0]
        assert row["status"] == "failed" and row["error"] == "ValueError: boom"
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
        [ProbeRow(10, "ics", 1, "distance", 0.25), ProbeRow(10, "ics", 1, "cosine", float("nan"))]
    )
    result.evals.append(EvalPoint(10, 0.5, 0.75, 0.3, 0.91))
    result.samples.append(SampleImage(10, 0, 3, bytes(range(256)) * 3))
    with Store(tmp_path / "p.db") as store:
        store.register_study("s", {}, [config])
        store.mark_running([config.run_id], 1, {})
        store.save_result(config.run_id, result)
        probes = [tuple(r)[1:] for r in store.probes("s")]
        assert probes == [(10, "ics", 1, "cosine", None), (10, "ics", 1, "distance", 0.25)]
        assert [tuple(r)[1:] for r in store.evals("s")] == [(10, 0.5, 0.75, 0.3, 0.91)]
        assert [tuple(r)[1:] for r in store.samples("s")] == [(10, 0, 3, bytes(range(256)) * 3)]
        store.mark_running([config.run_id], 1, {})  # a retry clears what the last try left
        assert store.probes("s") == store.evals("s") == store.samples("s") == []


@pytest.mark.parametrize(("version", "dropped"), [(1, "probes, evals, samples"), (2, "samples")])
def test_an_older_database_gains_the_later_tables(tmp_path, version, dropped):
    path = tmp_path / "old.db"
    with Store(path) as store:
        store.register_study("s", {}, [RunConfig()])
    conn = sqlite3.connect(path)
    conn.executescript("".join(f"DROP TABLE {t};" for t in dropped.split(", ")))
    conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(version),))
    conn.commit()
    conn.close()
    with Store(path) as store:
        assert store.probes("s") == store.samples("s") == [] and store.study_names() == ["s"]
    version = sqlite3.connect(path).execute("SELECT value FROM meta").fetchone()[0]
    assert int(version) == SCHEMA_VERSION == 3
