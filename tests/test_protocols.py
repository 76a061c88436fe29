"""The fair-comparison protocols: each arm at its best learning rate (``tune``), training
to a validation plateau (``patience``) and precise-BN evaluation, on synthetic records
and on real MNIST."""

import math
from dataclasses import fields, replace

import pytest

import normlab
from normlab.analysis.records import RunRecord, records
from normlab.analysis.tuning import chosen_note, select_tuned
from normlab.claims.claim import ClaimError, claim_study
from normlab.claims.definitions import CLAIMS
from normlab.claims.judge import judge_runs
from normlab.spec.config import RunConfig
from normlab.spec.study import StudyError, StudySpec
from normlab.types import EpochMetrics, ProbeRow, Status

SMALL = {"hidden": [64], "inputs": "scaled", "batch_size": 500, "val_size": 5000}


def _record(val_accs, status="done", test_acc=0.9, **config):
    """A made-up run whose epochs have validation accuracies ``val_accs``."""
    nan = dict.fromkeys((f.name for f in fields(EpochMetrics)), math.nan)
    epochs = [EpochMetrics(**(nan | {"epoch": i + 1, "val_acc": v, "test_acc": test_acc + i}))
              for i, v in enumerate(val_accs)]  # fmt: skip
    return RunRecord(RunConfig(**config), Status(status), epochs, [], [])


def test_a_plateau_run_reports_its_best_validation_epoch():
    last = _record([0.90, 0.95, 0.94, 0.93])
    assert last.final("val_acc") == 0.93  # no patience: the last epoch
    plateau = _record([0.90, 0.95, 0.94, 0.95], patience=2, epochs=10)
    assert plateau.reported.epoch == 2  # the first of two equals
    assert plateau.final("test_acc") == 0.9 + 1
    assert math.isnan(_record([0.9], status="diverged").final("test_acc"))


def test_tuning_keeps_each_seeds_best_run_on_validation_never_test():
    runs = [
        _record([0.91], lr=1e-3, seed=0, test_acc=0.99),  # best on test, not validation
        _record([0.95], lr=1e-2, seed=0),
        _record([0.93], lr=1e-3, seed=1),
        _record([0.93], lr=1e-2, seed=1),  # a tie: the first in study order
        _record([0.5], lr=1e-3, seed=2, status="diverged"),
        _record([0.5], lr=1e-2, seed=2, status="diverged"),
        _record([0.97], lr=1e-3, seed=3),
        _record([], lr=1e-2, seed=3, status="queued"),  # not all finished: no value yet
    ]
    kept = select_tuned(runs, ("lr",))
    assert [(r.config.seed, r.config.lr, r.status) for r in kept] == [
        (0, 1e-2, Status.DONE), (1, 1e-3, Status.DONE), (2, 1e-3, Status.DIVERGED),
        (3, 1e-2, Status.QUEUED),
    ]  # fmt: skip
    assert select_tuned(runs, ()) == runs
    note = chosen_note(kept, ("lr",), lambda r: r.config.norm)
    assert note == "learning rate chosen per seed on validation: none 0.001 ×1, 0.01 ×1"


def test_a_tuned_claim_judges_the_selection_and_shows_the_default_rate_beside_it():
    claim = replace(CLAIMS[17], tune=("lr",), where=None, by=())
    runs = []
    for seed in range(6):
        for norm, lr, val, test in (("batch", 1e-3, 0.95, 0.95), ("batch", 1e-2, 0.97, 0.97),
                                    ("none", 1e-3, 0.96, 0.96), ("none", 1e-2, 0.94, 0.94)):
            runs.append(_record([val + seed * 1e-4], norm=norm, lr=lr, seed=seed,
                                test_acc=test + seed * 1e-4, inputs="scaled"))  # fmt: skip
    result = judge_runs(claim, runs)
    tuned = {j.label: j.comparison.effect for j in result.comparisons}
    assert tuned["test accuracy"] == pytest.approx(0.97 - 0.96)  # best against best
    fixed = {j.label: j.comparison.effect for j in result.context}
    assert fixed["fixed lr 0.001, test accuracy"] == pytest.approx(0.95 - 0.96)
    assert "batch 0.01 ×6; none 0.001 ×6" in " ".join(result.notes)
    assert result.regime.lr == "tuned per arm on validation over [0.001, 0.01]"
    assert result.runs == len(runs)


def test_study_files_tune_only_the_learning_rate_over_two_values_or_more():
    base = {"name": "t", "seeds": 1, "fixed": {"epochs": 1}}
    assert len(StudySpec(**base, tune={"lr": [1e-3, 1e-2]}).runs()) == 2
    for tune, message in (
        ({"momentum": [0.9, 0.99]}, "tune.momentum: only lr can be tuned"),
        ({"lr": [1e-3]}, "tune.lr: give at least two values"),
        ({"lr": [1e-3, -1.0]}, "tune.lr: Input should be greater than 0"),
    ):
        with pytest.raises(StudyError, match=message):
            StudySpec(**base, tune=tune).runs("s.toml")
    with pytest.raises(StudyError, match="lr: set both in tune and in grid"):
        StudySpec(**base, grid={"lr": [1e-3]}, tune={"lr": [1e-3, 1e-2]}).runs()
    budgeted = StudySpec(**base, budget={"quick": {"tune": {"lr": [1e-3, 3e-3]}}})
    assert budgeted.with_budget("quick").tune == {"lr": [1e-3, 3e-3]}
    assert "[tune]" in StudySpec(**base, tune={"lr": [1e-3, 1e-2]}).to_toml()


def test_a_claim_and_its_study_agree_on_what_is_tuned():
    with pytest.raises(ClaimError, match="tunes"):
        claim_study(replace(CLAIMS[3], tune=("lr",)), "quick")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"patience": 2, "val_size": 0}, "patience stops at a validation plateau"),
        ({"patience": 2, "norm": "batch", "probes": ["inference"]}, "measures at the last step"),
        ({"model": "gan", "patience": 1}, "needs a classifier"),
    ],
)
def test_a_plateau_stop_refuses_what_it_cannot_do(settings, message):
    with pytest.raises(ValueError, match=message):
        RunConfig(**settings)


def test_old_runs_keep_their_ids():
    config = RunConfig(norm="batch")
    assert RunConfig(norm="batch", patience=0, evaluation="running").run_id == config.run_id
    assert RunConfig(norm="batch", evaluation="precise").run_id != config.run_id


def _trained(tmp_path, data_root, name, **fixed):
    spec = StudySpec(name=name, seeds=2, fixed={**SMALL, **fixed}, grid={"norm": ["none", "batch"]})
    normlab.run_study(spec, db=tmp_path / "p.db", data_dir=data_root)
    return {(r.config.norm, r.config.seed): r
            for r in records(normlab.store.db.Store(tmp_path / "p.db"), name)}  # fmt: skip


def test_stopping_at_a_plateau_changes_nothing_a_member_trained_on_real_mnist(tmp_path, data_root):
    full = _trained(tmp_path, data_root, "full", epochs=5, lr=2e-2)
    stopped = _trained(tmp_path, data_root, "stopped", epochs=5, lr=2e-2, patience=1)
    for key, run in stopped.items():
        trained = len(run.epochs)
        assert run.epochs == [replace(e, seconds=run.epochs[i].seconds,
                                      eval_seconds=run.epochs[i].eval_seconds)
                              for i, e in enumerate(full[key].epochs[:trained])]  # fmt: skip
        vals = [e.val_acc for e in full[key].epochs]
        best = max(range(trained), key=lambda i: (vals[i], -i))
        # it stopped the first epoch after one without a new best, or at the cap
        worse = [i for i in range(1, 5) if vals[i] <= max(vals[:i])]
        assert trained == (worse[0] + 1 if worse else 5)
        assert run.reported.epoch == best + 1
    assert any(len(r.epochs) < 5 for r in stopped.values())  # the test can tell


def test_precise_evaluation_keeps_the_running_figures_beside_it_on_real_mnist(
    tmp_path, data_root
):
    keras = {"epochs": 1, "semantics": "keras"}  # momentum 0.99, 110 steps
    running = _trained(tmp_path, data_root, "running", **keras)
    precise = _trained(tmp_path, data_root, "precise", **keras, evaluation="precise")
    for (norm, seed), run in precise.items():
        before = running[(norm, seed)].epochs[0]
        beside = {p.name: p.value for p in run.probes if p.probe == "evaluation"}
        if norm == "none":  # no running statistics: nothing to recompute
            assert run.epochs[0].test_acc == before.test_acc and not beside
            continue
        # the same training; its running figures are the running evaluation's
        assert run.epochs[0].train_loss == before.train_loss
        assert beside["running_test_acc"] == pytest.approx(before.test_acc, abs=1e-12)
        assert beside["running_val_acc"] == pytest.approx(before.val_acc, abs=1e-12)
        # 110 steps of momentum 0.99 lag behind; statistics for these weights do not
        assert run.epochs[0].test_acc > before.test_acc


def test_claim_9_is_a_difference_in_differences():
    accuracies = (("batch", "standardized", 0.97), ("none", "standardized", 0.97),
                  ("batch", "scaled", 0.975), ("none", "scaled", 0.965),
                  ("batch", "raw", 0.97), ("none", "raw", 0.95))  # fmt: skip
    runs = [_record([0.9], norm=norm, inputs=inputs, lr=1e-3, test_acc=acc)
            for norm, inputs, acc in accuracies]  # fmt: skip
    claim = CLAIMS[9]
    values = {name: measure(runs) for name, measure in claim.measures.items()}
    assert values["standardized vs scaled"] == pytest.approx(0.0 - 0.01)
    assert values["standardized vs raw"] == pytest.approx(0.0 - 0.02)
    context = {name: measure(runs) for name, measure in claim.context_measures.items()}
    assert context["BN − none with raw inputs"] == pytest.approx(0.02)
    assert math.isnan(claim.measures["standardized vs raw"](runs[:4]))  # raw runs missing


def test_bn_momentum_and_epsilon_override_the_preset():
    keras = RunConfig(norm="batch").norm_settings()
    assert keras.momentum == pytest.approx(0.01) and keras.eps == 1e-3
    mine = RunConfig(norm="batch", bn_momentum=0.9, bn_eps=1e-5).norm_settings()
    assert mine.momentum == pytest.approx(0.1) and mine.eps == 1e-5
    assert RunConfig(norm="batch", bn_momentum=None).run_id == RunConfig(norm="batch").run_id
    with pytest.raises(ValueError, match="bn_momentum"):
        RunConfig(bn_momentum=1.0)


def test_the_defaults_are_set_against_the_best_other_setting_on_validation():
    claim = CLAIMS[18]
    default = {"bn_momentum": 0.99, "bn_eps": 1e-3, "norm_gain": 1.0}
    runs = [
        _record([0.95], norm="batch", test_acc=0.95, **default),
        _record([0.97], norm="batch", test_acc=0.94, **(default | {"norm_gain": 2.0})),
        _record([0.96], norm="batch", test_acc=0.99, **(default | {"bn_eps": 1e-5})),
    ]
    (measure,) = claim.measures.values()
    assert measure(runs) == pytest.approx(0.95 - 0.94)  # best on validation, not test
    claim.check([r.config for r in runs], "s")


def test_claim_11_is_the_bn_networks_own_slope_and_claim_24_reads_smoothness():
    assert CLAIMS[11].factor is None and CLAIMS[11].where(RunConfig(norm="batch"))
    assert not CLAIMS[11].where(RunConfig(norm="none"))
    (measure,) = CLAIMS[24].measures.values()
    rows = [ProbeRow(step, "smoothness", -1, "beta_smoothness", v)
            for step, v in ((1, 1e6), (50, 10.0), (100, 30.0))]  # fmt: skip
    run = RunRecord(RunConfig(), Status.DONE, [], [], rows)
    assert measure(run) == pytest.approx(math.log10(20.0))  # the initialization aside


def test_evaluations_per_epoch_resolve_every_batch_size_alike():
    assert RunConfig(batch_size=16, eval_per_epoch=10).eval_interval == 343
    assert RunConfig(batch_size=256, eval_per_epoch=10).eval_interval == 21
    assert RunConfig(eval_every=50).eval_interval == 50
    with pytest.raises(ValueError, match="eval_every or eval_per_epoch"):
        RunConfig(eval_every=50, eval_per_epoch=10)


def test_a_gan_that_failed_to_train_has_no_collapse_value():
    from normlab.claims.measures import collapse_note, failed_to_train, mode_kl

    def gan(status="done", recognizable=0.9, kl=0.05, modes=10):
        rows = [ProbeRow(100, "modes", -1, name, v) for name, v in
                (("recognizable", recognizable), ("kl", kl), ("modes", modes))]  # fmt: skip
        return RunRecord(RunConfig(model="gan"), Status(status), [], [], rows)

    trained, collapsed = gan(), gan(kl=math.log(10), modes=1)
    blots, diverged = gan(recognizable=0.1, kl=math.log(10), modes=1), gan(status="diverged")
    assert [failed_to_train(r) for r in (trained, collapsed, blots, diverged)] == [0, 0, 1, 1]
    assert mode_kl(trained) == 0.05 and mode_kl(collapsed) == pytest.approx(math.log(10))
    assert math.isnan(mode_kl(blots)) and math.isnan(mode_kl(diverged))
    note = collapse_note([trained, collapsed, blots, diverged])
    assert note.startswith("of 4 GANs 2 failed to train (1 diverged;")
    assert "1 collapsed totally (one mode)" in note
    assert collapse_note([trained]) == "every one of 1 GANs trained; none collapsed totally"
