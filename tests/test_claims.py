"""Claim definitions, budgets and the `normlab claims` verdicts on real MNIST."""

import csv
import json
import math
import sqlite3
import sys
from collections import defaultdict
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from normlab.analysis.records import RunRecord
from normlab.analysis.regime import regime
from normlab.analysis.stats import Comparison
from normlab.analysis.verdict import Rule, verdict
from normlab.claims.claim import Claim, ClaimError, claim_study
from normlab.claims.definitions import CLAIMS, selected
from normlab.claims.judge import judge_values
from normlab.claims.measures import (
    bn_probe_difference,
    chance,
    covariate_shift,
    epochs_to,
    gradient_imbalance,
    gradient_noise,
    init_gradient_growth,
    largest_usable_lr,
    phase_gradient_noise,
    spread_of_final_accuracy,
    steps_to,
    train_test_gap,
    variance_shift,
)
from normlab.claims.stored import stored_claims
from normlab.cli import app
from normlab.spec.config import RunConfig
from normlab.spec.settings import SETTINGS, Setting
from normlab.spec.study import StudyError
from normlab.store.db import Store
from normlab.types import EpochMetrics, EvalPoint, ProbeRow, Status

sys.path.insert(0, str(Path(__file__).parent))
from test_recompute import recompute


def test_every_claim_study_expands_at_every_budget():
    assert sorted(CLAIMS) == list(range(1, 26))  # the seed's claims, parts and findings
    parts = {11: 3, 12: 4, 18: 14, 19: 15, 20: 16, 21: 16, 22: 13, 24: 8, 25: 8}
    assert {c.id: c.part_of for c in CLAIMS.values() if c.part_of} == parts
    for claim in CLAIMS.values():
        sizes = [len(claim_study(claim, b).runs()) for b in ("quick", "standard", "full")]
        assert sizes[0] <= sizes[1] <= sizes[2], (claim.id, sizes)
        quick = claim_study(claim, "quick")
        assert quick.name.endswith("-quick")
        arms = {claim.arm_of(c) for c in quick.runs()}
        assert arms >= ({claim.arm, *claim.baselines} if claim.factor else {claim.arm}), claim.id
    with pytest.raises(StudyError, match="budget must be one of"):
        claim_study(CLAIMS[1], "huge")


@pytest.mark.parametrize("setting", SETTINGS[1:], ids=lambda s: s.label)
def test_every_claim_study_expands_in_every_setting_or_says_why_not(setting):
    for claim in CLAIMS.values():
        if claim.not_applicable(setting):
            with pytest.raises(ClaimError, match=f"claim {claim.id} is about the MLP"):
                claim_study(claim, "quick", setting)
            continue
        for budget in ("quick", "standard"):
            spec = claim_study(claim, budget, setting)
            runs = spec.runs()
            assert spec.name.endswith(f"-{budget}-{setting.model}-{setting.dataset}")
            assert {(c.model, c.dataset) for c in runs} == {(setting.model, setting.dataset)}


def test_budget_can_move_a_factor_between_fixed_and_grid():
    quick = claim_study(CLAIMS[1], "quick")
    assert "batch_size" in quick.grid and quick.grid["batch_size"] == [128]
    assert quick.fixed["epochs"] == 1 and quick.seeds == 8


def _run(evals, epochs, status="done", probes=(), **config):
    """A made-up run: ``epochs`` and ``evals`` give the values that matter (the rest
    NaN), ``probes`` are ``ProbeRow``s."""
    config = {"val_size": 5000, "batch_size": 1000, **config}  # 55 steps per epoch
    nan = dict.fromkeys((f.name for f in fields(EpochMetrics)), math.nan) | {"epoch": 1}
    epochs = [EpochMetrics(**(nan | e)) for e in epochs]
    evals = [EvalPoint(**({"epoch": 0.5, "seconds": 1.0, "val_loss": 0.3} | e)) for e in evals]
    return RunRecord(RunConfig(**config), Status(status), epochs, evals, list(probes))


def _probe(probe, layer, name, value, step=50):
    return ProbeRow(step, probe, layer, name, value)


def test_steps_to_target_reads_mid_epoch_and_epoch_end_evaluations():
    evals = [{"step": 20, "val_acc": 0.91}, {"step": 40, "val_acc": 0.94}]
    epochs = [{"epoch": 1, "val_acc": 0.96, "train_acc": 0.97, "test_acc": 0.95}]
    run = _run(evals, epochs)
    assert steps_to(0.90)(run) == 20.0 and steps_to(0.93)(run) == 40.0
    assert steps_to(0.955)(run) == 55.0  # first reached at the end of epoch 1
    assert steps_to(0.99)(run) == math.inf
    assert epochs_to(0.93)(run) == pytest.approx(40 / 55) and epochs_to(0.99)(run) == math.inf
    assert train_test_gap(run) == pytest.approx(0.02)
    assert math.isnan(train_test_gap(_run([], epochs, status="diverged")))


def test_measures_that_span_a_seeds_runs_or_read_probes():
    def final(acc, lr, status="done"):
        return _run([], [{"val_acc": acc, "test_acc": acc}], status=status, lr=lr)

    runs = [final(0.95, 1e-3), final(0.955, 1e-2), final(0.948, 1e-1), final(0.1, 1.0, "diverged")]
    assert largest_usable_lr(0.01)(runs) == pytest.approx(-1.0)  # 0.948 is within 1 point
    assert largest_usable_lr(0.001)(runs) == pytest.approx(-2.0)
    assert math.isnan(largest_usable_lr(0.01)([runs[3]]))  # no finished run: no value
    # usable at the grid's top: censored there, ranked above every finite value
    assert largest_usable_lr(0.01)(runs[:3]) == math.inf
    # a diverged run counts as chance level in the spread over inits; a failed one is
    # no outcome at all, so the seed has no value
    assert spread_of_final_accuracy(runs) == pytest.approx(
        np.std([0.95, 0.955, 0.948, 0.1], ddof=1)
    )
    assert math.isnan(spread_of_final_accuracy([*runs[:3], final(0.1, 1.0, "failed")]))
    # chance is one over the dataset's classes: stacked MNIST has 1,000
    assert chance(_run([], [], model="gan", dataset="stacked-mnist")) == 0.001
    ics = [_probe("ics", 0, "cosine", 1.0), _probe("ics", 1, "cosine", 0.9),
           _probe("ics", 2, "cosine", 0.7), _probe("ics", 2, "cosine", None, step=100)]  # fmt: skip
    assert covariate_shift(_run([], [{}], probes=ics)) == pytest.approx(0.2)  # layer 0 aside
    grads = [_probe("layers", i, "grad_norm", g) for i, g in enumerate((1e-3, 5.0, 1e-1, 7.0))]
    assert gradient_imbalance(_run([], [{}], probes=grads)) == pytest.approx(2.0)  # 1e-3 vs 1e-1


def test_gradient_noise_is_the_ratio_of_mean_trace_to_mean_signal_after_initialization():
    epochs = [{"epoch": 1, "val_acc": 0.9, "train_acc": 0.9, "test_acc": 0.9}]
    # (trace, signal, step): the init aside; a negative signal estimate is weighed, not
    # dropped: mean trace 40, mean signal (6 + 1 - 3) / 3 = 4/3 -> log10(30)
    rows = [_probe("noise", -1, name, v, step)
            for t, g, step in ((1e6, 1.0, 1), (60.0, 6.0, 50), (20.0, 1.0, 100), (40.0, -3.0, 150))
            for name, v in (("trace", t), ("signal", g))]  # fmt: skip
    assert gradient_noise(_run([], epochs, probes=rows)) == pytest.approx(math.log10(30.0))
    assert math.isnan(gradient_noise(_run([], epochs, probes=rows[:2])))  # init only
    assert math.isnan(gradient_noise(_run([], epochs, status="diverged", probes=rows)))
    negative = [
        *rows[:2],
        _probe("noise", -1, "trace", 5.0, 50),
        _probe("noise", -1, "signal", -1.0, 50),
    ]
    assert math.isnan(gradient_noise(_run([], epochs, probes=negative)))  # no signal at all


def test_gradient_noise_in_a_phase_reads_the_measurements_at_that_training_loss():
    epochs = [{"epoch": 1, "val_acc": 0.9, "train_acc": 0.9, "test_acc": 0.9}]
    # (trace, signal, loss, step): the init is in no phase; steps 50 and 150 are in
    # [0.2, 0.5]: mean trace 30, mean signal 2 -> log10(15)
    rows = [_probe("noise", -1, name, v, step)
            for t, g, loss, step in ((1e6, 1.0, 0.3, 1), (20.0, 1.0, 0.45, 50),
                                     (99.0, 9.0, 0.9, 100), (40.0, 3.0, 0.25, 150))
            for name, v in (("trace", t), ("signal", g), ("loss", loss))]  # fmt: skip
    run = _run([], epochs, probes=rows)
    assert phase_gradient_noise(0.2, 0.5)(run) == pytest.approx(math.log10(15.0))
    assert phase_gradient_noise(0.6, 1.0)(run) == pytest.approx(math.log10(11.0))
    assert math.isnan(phase_gradient_noise(0.01, 0.1)(run))  # never got there
    assert CLAIMS[15].measures_in(SETTINGS[0]) and CLAIMS[16].context_measures


def test_measures_at_initialization_and_at_the_last_measurement():
    def deep(depth, first, last):
        grads = [_probe("layers", i, "grad_norm", first if i == 0 else last, step=1)
                 for i in range(depth)]  # fmt: skip
        grads.append(_probe("layers", depth, "grad_norm", 1.0, step=1))  # output layer
        grads.append(_probe("layers", 0, "grad_norm", 1e9, step=50))  # not at init
        return _run([], [{}], probes=grads, hidden=[8] * depth)

    # log10 ratios 0, 0.6 and 1.2 at depths 2, 4 and 6: 0.3 decades per layer
    runs = [deep(2, 1.0, 1.0), deep(4, 10**0.6, 1.0), deep(6, 10**1.2, 1.0)]
    assert init_gradient_growth(runs) == pytest.approx(0.3)
    assert math.isnan(init_gradient_growth(runs[:2]))  # two depths: always on a line
    bn = [
        *(_probe("bn", -1, n, v, step=1) for n, v in (("running_acc", 0.9), ("precise_acc", 0.5))),
        *(
            _probe("bn", -1, n, v, step=99)
            for n, v in (("running_acc", 0.95), ("precise_acc", 0.97))
        ),
        _probe("bn", 0, "variance_shift", 1.5, step=99),
        _probe("bn", 1, "variance_shift", 2.5, step=99),
    ]
    run = _run([], [{}], probes=bn)
    assert bn_probe_difference("running_acc", "precise_acc")(run) == pytest.approx(-0.02)
    assert variance_shift(run) == pytest.approx(2.0)  # mean over the layers
    assert math.isnan(variance_shift(_run([], [{}])))


def test_several_baselines_and_context_comparisons():
    claim = Claim(99, "x", None, "acc", {"": None}, Rule(direction=-1, min_effect=0.01),
                  by=("batch_size",), baselines=("group", "layer"), context=("none",))  # fmt: skip
    seeds = range(6)
    arms = {"batch_size=4": {
        "batch": {s: 0.90 + 0.001 * s for s in seeds},
        "group": {s: 0.95 + 0.002 * s for s in seeds},
        "layer": {s: 0.96 + 0.001 * (s % 2) for s in seeds},
        "none": {s: 0.90 + 0.0012 * s for s in seeds},
    }}  # fmt: skip
    gap = {"batch_size=4": {n: {s: 0.0 for s in seeds} for n in ("batch", "group", "layer")}}
    gap["batch_size=4"]["batch"] = {s: -0.05 - 0.01 * s for s in seeds}
    result = judge_values(claim, arms, runs=24, context=gap)
    labels = [j.label for j in result.comparisons]
    assert labels == ["batch_size=4, vs group", "batch_size=4, vs layer"]
    assert [(j.group, j.baseline) for j in result.comparisons] == [
        ("batch_size=4", "group"), ("batch_size=4", "layer")]  # fmt: skip
    assert result.verdict == "supported" and result.effect < -0.04
    context = {j.label: j.comparison.effect for j in result.context}
    assert context["batch_size=4, vs none"] == pytest.approx(-0.0005)  # outside the verdict
    assert context["batch_size=4, vs group"] == pytest.approx(-0.075)  # the context measure
    assert len(context) == 2  # context measures against the first baseline only


def test_a_claim_is_checked_against_its_study():
    runs = [RunConfig(norm=n, seed=s, lr=lr) for n in ("none", "batch") for s in (0, 1)
            for lr in (1e-3, 1e-2)]  # fmt: skip
    claim = CLAIMS[8]  # compares by batch size only, at one rate
    with pytest.raises(ClaimError, match="claim 8: s varies 'lr', which the claim neither"):
        claim.check(runs, "s")
    with pytest.raises(ClaimError, match="claim 8: s has no run with norm='none'"):
        claim.check([r for r in runs if r.norm == "batch"], "s")
    CLAIMS[2].check(runs, "s")  # claim 2 spans the learning rates
    CLAIMS[4].check(runs, "s")  # claim 4 tunes them


def test_deep_networks_are_selected_by_their_depth():
    deep = CLAIMS[3].where
    assert deep(RunConfig(hidden=(128,) * 8)) and deep(RunConfig(hidden=(64,) * 16))
    assert not deep(RunConfig(hidden=(128, 128)))


def test_a_seed_without_a_value_is_dropped_and_said_so():
    claim = CLAIMS[2]
    arms = {"optimizer=adam": {
        "batch": {0: -1.0, 1: -1.0, 2: math.nan, 3: -1.5},
        "none": {0: -2.0, 1: -2.0, 2: -2.0, 3: -2.5},
    }}  # fmt: skip
    result = judge_values(claim, arms, runs=8)
    (judged,) = result.comparisons
    comparison = judged.comparison
    assert comparison.n_arm == comparison.n_baseline == 3 and result.dropped == 1
    assert comparison.effect == pytest.approx(1.0)
    from normlab.claims.judge import _missing

    assert _missing(arms) == ([
        "optimizer=adam, batch: seed(s) 2 without a value (diverged, failed or not "
        "finished), left out of the comparison"
    ], 1)  # fmt: skip


def test_an_inconclusive_verdict_says_whether_seeds_would_settle_it():
    claim = CLAIMS[9]  # BN - none in final test accuracy; matters from 0.002, lower

    def judged(batch: list[float], none: list[float]):
        arms = {"inputs=scaled": {"batch": dict(enumerate(batch)), "none": dict(enumerate(none))}}
        return judge_values(claim, arms, runs=2 * len(batch))

    # noisy, 3 seeds, a small effect: inconclusive for want of seeds, and how many would do
    few = judged([0.970, 0.975, 0.968], [0.972, 0.971, 0.973])
    assert few.verdict == "inconclusive" and few.power.startswith("too few seeds")
    assert few.seeds_needed is not None and few.seeds_needed > 3
    assert f"about {few.seeds_needed} seeds would" in few.power
    assert few.detectable["inputs=scaled"] > claim.rule.min_effect
    # precise enough to detect the size that matters, an effect of half that size
    # neither shown nor ruled out: more seeds would not settle it quickly
    near = judged([0.9719, 0.9710, 0.9737, 0.9734], [0.9720, 0.9729, 0.9741, 0.9750])
    assert near.verdict == "inconclusive" and "near the size that matters" in near.power
    assert near.seeds_needed is None and near.as_json()["detectable_effect"] < 0.002
    # a clear result has no such sentence, and its seeds needed are few
    clear = judged([0.960, 0.961, 0.962, 0.963], [0.970, 0.9705, 0.9725, 0.973])
    assert clear.verdict == "supported" and clear.power == "" and clear.seeds_needed <= 4


def test_only_brings_a_claims_parts_after_it():
    assert selected([4, 1]) == [1, 4, 12]
    assert selected(list(CLAIMS)) == [1, 2, 3, 11, 4, 12, 5, 6, 7, 8, 24, 25, 9, 10, 13, 22,
                                      14, 18, 15, 19, 16, 20, 21, 17, 23]  # fmt: skip
    assert selected([14]) == [14, 18]
    assert selected([13]) == [13, 22]
    with pytest.raises(ValueError, match="no claim 26"):
        selected([26])


@pytest.mark.slow
def test_claims_command_gives_verdicts_on_real_mnist(claims_db):
    db, verdicts = claims_db  # `normlab claims --only 4,9 --json`, run once per session
    runner = CliRunner()
    assert [v["id"] for v in verdicts] == [4, 12, 9]  # 12 is claim 4's second part
    keys = {"id", "claim", "verdict", "effect", "ci_low", "ci_high", "p_corrected", "runs",
            "detectable_effect", "seeds_needed", "regime", "setting", "basis",
            "dropped"}  # fmt: skip
    four = verdicts[0]
    # 2 arms × 3 seeds × 3 learning rates, each seed's best on validation judged
    assert set(four) == keys and four["runs"] == 18 and four["ci_low"] <= four["effect"]
    assert four["setting"] == "MLP/MNIST"
    # the regime: quick's protocol for the seed's network at batch 128, 3 seeds
    regime = four["regime"]
    assert {k: regime[k] for k in ("datasets", "models", "epochs", "steps", "seeds")} == {
        "datasets": ["mnist"], "models": ["MLP 1×512"], "epochs": [8], "steps": [3432],
        "seeds": 3}  # fmt: skip
    assert regime["lr"] == "tuned per arm on validation over [0.001, 0.003, 0.01]"
    assert regime["stopping"].startswith("validation plateau, patience 1, cap 8 epochs")
    assert regime["evaluation"] == "precise BN"
    # one comparison (batch 128): the verdict is the rule applied to it
    lead = Comparison(four["effect"], four["ci_low"], four["ci_high"], 0.0, "", 3, 3, True)
    assert four["verdict"] == verdict([lead], [four["p_corrected"]], CLAIMS[4].rule)
    # resumes: no training
    again = runner.invoke(app, ["claims", "--only", "4", "--db", str(db)])
    assert again.exit_code == 0 and "18 already finished, 0 to train" in again.output
    assert verdicts[0]["verdict"] in again.output
    # divergence is an outcome, shown for claim 4 and its part 12
    assert again.output.count("diverged: none of 6 runs") == 2
    assert "context, batch_size=128, dropout=0.5, variance shift" in again.output
    assert "4. BN has a regularizing effect" in again.output  # the claim, under the table
    assert "regime: mnist, MLP 1×512, validation plateau, patience 1, cap 8" in again.output
    assert "context, fixed lr 0.001, batch_size=128" in again.output  # the seed's rate
    assert "learning rate chosen per seed on validation: batch" in again.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--only", "99"], "--only: no claim 99"),
        (["--only", "one"], "--only: expected comma-separated"),
        (["--budget", "huge"], "--budget: 'huge' is not one of"),
    ],
)
def test_claims_bad_options_exit_2(tmp_path, args, message):
    result = CliRunner().invoke(app, ["claims", *args, "--db", str(tmp_path / "c.db")])
    assert result.exit_code == 2 and message in result.output


def test_inference_claim_is_stored_and_judged_from_its_runs(tmp_path, data_root, monkeypatch):
    monkeypatch.setenv("NORMLAB_DATA", str(data_root))
    db = tmp_path / "c.db"
    result = CliRunner().invoke(app, ["claims", "--only", "7", "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert "identical to float rounding" in result.output  # folding kept the outputs
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT count(*) FROM runs WHERE status = 'done'").fetchone()[0] == 5
    rows = conn.execute("SELECT run_id, name, value FROM probes WHERE probe = 'inference'")
    per_run = defaultdict(dict)
    for run_id, name, value in rows:
        per_run[run_id][name] = value
    assert len(per_run) == 5 and all(0 < v["latency_bn_b1"] < 1 for v in per_run.values())
    # the verdict's numbers are the stored latencies' log ratios, compared with no effect
    again = CliRunner().invoke(app, ["claims", "--only", "7", "--json", "--db", str(db)])
    (seven,) = json.loads(again.output[again.output.index("[") :])
    ratios = {b: [math.log(v[f"latency_bn_b{b}"] / v[f"latency_folded_b{b}"])
                  for v in per_run.values()] for b in (1, 256)}  # fmt: skip
    assert seven["runs"] == 5
    assert seven["effect"] in [pytest.approx(np.mean(r)) for r in ratios.values()]


@pytest.mark.slow
def test_a_claim_on_the_cnn_and_fashion_mnist_end_to_end(
    tmp_path, data_root, monkeypatch, debian_fashion
):
    """Claim 9 on the small CNN with Fashion-MNIST (real files), claim 10 saying it does
    not apply there, and the report's grid setting the verdict beside the other
    settings'."""
    monkeypatch.setenv("NORMLAB_DATA", str(data_root))
    db = str(tmp_path / "c.db")
    args = ["claims", "--only", "9,10", "--model", "cnn", "--dataset", "fashion-mnist"]
    done = CliRunner().invoke(app, [*args, "--json", "--db", db])
    assert done.exit_code == 0, done.output
    nine, ten = json.loads(done.output[done.output.index("[") :])
    # 2 norms × 3 inputs × 3 seeds × 3 learning rates
    assert nine["setting"] == ten["setting"] == "CNN/Fashion" and nine["runs"] == 54
    assert nine["regime"]["models"] == ["CNN 8-16 + 1×512"]
    assert nine["regime"]["datasets"] == ["fashion-mnist"]
    assert ten["verdict"] == "not applicable" and "MLP on MNIST" in ten["reason"]
    with sqlite3.connect(db) as conn:
        (name,) = conn.execute("SELECT DISTINCT name FROM studies").fetchone()
    assert name == "claim-09-normalization-conflicts-quick-cnn-fashion-mnist"
    # the verdict is the rule applied to the comparisons judged from the stored runs...
    with Store(db) as store:
        (stored,) = stored_claims(store, "quick", [9], Setting("cnn", "fashion-mnist"))
    judged = stored.result
    assert [j.label for j in judged.comparisons] == ["standardized vs raw",
                                                     "standardized vs scaled"]  # fmt: skip
    rule = verdict([j.comparison for j in judged.comparisons],
                   [j.p_corrected for j in judged.comparisons], CLAIMS[9].rule)  # fmt: skip
    assert nine["verdict"] == judged.verdict == rule and nine["effect"] == judged.effect
    # ...whose p-values scipy recomputes from the exported values of this study
    rows = tmp_path / "measures.csv"
    export = ["export", "--table", "measures", "--db", db, "--study", name, "--out", str(rows)]
    assert CliRunner().invoke(app, export).exit_code == 0
    with rows.open() as f:
        again = recompute(list(csv.DictReader(f)))[9]
    assert again["verdict"] == nine["verdict"]
    ps = [found[3] for found in again["comparisons"].values()]
    assert any(math.isclose(p, nine["p_corrected"], rel_tol=1e-9) for p in ps), again
    page = tmp_path / "c.html"
    report = ["report", "--claims", "--db", db, "--out", str(page), *args[3:]]
    assert CliRunner().invoke(app, report).exit_code == 0
    html = page.read_text()
    assert "verdicts across settings" in html and "CNN/Fashion" in html
    assert "Not applicable to CNN/Fashion: claim(s)" in html
    # the seed's setting has no study here: it is no page of its own
    seed = CliRunner().invoke(app, ["report", "--claims", "--db", db, "--out", str(page)])
    assert seed.exit_code == 2 and "for MLP/MNIST" in seed.output


def test_the_regime_names_data_models_length_seeds_and_protocol():
    def run(depth, seed, epochs, **protocol):  # 55 steps per epoch
        config = RunConfig(hidden=(128,) * depth, seed=seed, epochs=epochs, batch_size=1000,
                           **protocol)  # fmt: skip
        return RunRecord(config, Status.DONE, [], [], [])

    runs = [run(16, 0, 1), run(2, 1, 1), run(8, 0, 3)]
    r = regime(runs)
    assert r.models == ("MLP 2×128", "MLP 8×128", "MLP 16×128")  # natural order
    assert r.text() == ("mnist, MLP 2×128 … MLP 16×128, 1/3 epochs (55/165 steps), 2 seeds; "
                        "lr fixed 0.001; running statistics")  # fmt: skip
    assert regime(runs[:1]).as_json()["stopping"] == "1 epoch"
    tuned = [run(2, 0, 20, patience=2, evaluation="precise", lr=lr) for lr in (1e-3, 1e-2)]
    protocol = regime(tuned, ("lr",)).as_json()
    assert protocol["lr"] == "tuned per arm on validation over [0.001, 0.01]"
    assert protocol["stopping"] == ("validation plateau, patience 2, cap 20 epochs; "
                                    "best-validation epoch reported")  # fmt: skip
    assert protocol["evaluation"] == "precise BN"
    assert regime(tuned).as_json()["lr"] == "each of [0.001, 0.01]"  # a grid, not tuned
