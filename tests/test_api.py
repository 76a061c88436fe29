"""The application layer as a notebook uses it: one call to run a study, one to judge
claims, no command line."""

import math

import pytest

import normlab
from normlab.analysis.verdict import verdict
from normlab.claims.definitions import CLAIMS
from normlab.spec.study import StudySpec


def test_a_notebook_runs_a_study(tmp_path, data_root):
    spec = StudySpec(
        name="notebook",
        seeds=2,
        fixed={"hidden": [32], "epochs": 1, "inputs": "scaled", "batch_size": 1000},
        grid={"norm": ["none", "batch"]},
    )
    db = tmp_path / "nb.db"
    report = normlab.run_study(spec, db=db, data_dir=data_root)
    assert (report.study, report.runs, report.trained, report.failures) == ("notebook", 4, 4, [])
    summary = report.summary()
    assert [g.factors["norm"] for g in summary.groups] == ["none", "batch"]
    assert all(0.8 < g.test_acc.mean < 1 for g in summary.groups)
    run = normlab.Execution(db=db, data_dir=data_root)  # the same, as one value
    again = normlab.run_study(spec, run)
    assert (again.finished_before, again.trained) == (4, 0)  # resumed: nothing to train
    assert normlab.summary(execution=run) == summary == normlab.summary("notebook", db=db)


@pytest.mark.slow
def test_a_notebook_judges_a_claim(claims_db):
    db, printed = claims_db  # claim 9's quick study, trained once by `normlab claims`
    (nine,) = normlab.judge_claims([9], budget="quick", db=db)  # all there: trains nothing
    # 2 norms × 3 inputs × 3 seeds × 3 learning rates
    assert nine.id == 9 and nine.runs == 54 and nine.failures == []
    (cli,) = [v for v in printed if v["id"] == 9]  # what the command printed of it
    assert (cli["verdict"], cli["effect"], cli["runs"]) == (nine.verdict, nine.effect, 54)
    assert math.isfinite(nine.effect) and nine.ci_low <= nine.effect <= nine.ci_high
    # the verdict is the rule applied to the comparisons it reports
    comparisons = [j.comparison for j in nine.comparisons]
    corrected = [j.p_corrected for j in nine.comparisons]
    assert [j.label for j in nine.comparisons] == ["standardized vs raw", "standardized vs scaled"]
    assert nine.verdict == verdict(comparisons, corrected, CLAIMS[9].rule)


def test_bad_input_raises_one_line_input_errors(tmp_path):
    with pytest.raises(normlab.InputError, match="no such study file"):
        normlab.run_study(tmp_path / "missing.toml", db=tmp_path / "x.db")
    with pytest.raises(normlab.InputError, match="unknown device 'tpu'"):
        normlab.run_study(StudySpec(name="x"), device="tpu", db=tmp_path / "x.db")
    with pytest.raises(normlab.InputError) as info:
        normlab.judge_claims([99], db=tmp_path / "x.db")
    assert info.value.option == "ids" and "no claim 99" in str(info.value)
    # the option each error concerns is data, set where the error is found
    for call, option in (
        (lambda: normlab.judge_claims([4], "auto", max_seeds=2, db=tmp_path / "x.db"), "max_seeds"),
        (lambda: normlab.judge_claims([4], "auto3", db=tmp_path / "x.db"), "budget"),
        (lambda: normlab.judge_claims([4], model="rnn", db=tmp_path / "x.db"), "model"),
        (lambda: normlab.judge_claims([4], dataset="cifar", db=tmp_path / "x.db"), "dataset"),
        (lambda: normlab.run_study(StudySpec(name="x"), db=tmp_path / "x.db",
                                   executor="pool", address="1.2.3.4:6379"), "address"),
        (lambda: normlab.run_study(StudySpec(name="x"), db=tmp_path / "x.db",
                                   executor="slurm"), "executor"),
        (lambda: normlab.summary(db=tmp_path / "none.db"), "db"),
        (lambda: normlab.summary("nope", db=tmp_path / "x.db"), "study"),
    ):  # fmt: skip
        with pytest.raises(normlab.InputError) as info:
            call()
        assert info.value.option == option, (option, str(info.value))
    with pytest.raises(TypeError, match=r"unknown execution option\(s\): gpu"):
        normlab.run_study(StudySpec(name="x"), gpu=True)
    (tmp_path / "junk.db").write_text("not a database at all" * 100)
    with pytest.raises(normlab.InputError, match=r"junk\.db"):
        normlab.run_study(StudySpec(name="x"), db=tmp_path / "junk.db")
