"""Claim definitions, budgets and the `normlab claims` verdicts on real MNIST."""

import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from normlab.analysis.claims import (
    CLAIMS,
    RunRecord,
    claim_study,
    covariate_shift,
    gradient_imbalance,
    largest_usable_lr,
    spread_of_final_accuracy,
    steps_to,
    train_test_gap,
)
from normlab.analysis.verdict import VERDICTS
from normlab.cli import app
from normlab.studies.spec import StudyError


def test_every_claim_study_expands_at_every_budget():
    assert sorted(CLAIMS) == list(range(1, 11))  # the seed's ten claims
    for claim in CLAIMS.values():
        if claim.study is None:  # claim 7 is measured live
            continue
        sizes = [len(claim_study(claim, b).runs()) for b in ("quick", "standard", "full")]
        assert sizes[0] <= sizes[1] <= sizes[2], (claim.id, sizes)
        quick = claim_study(claim, "quick")
        assert quick.name.endswith("-quick")
        assert {c.norm for c in quick.runs()} >= {claim.arm, claim.baseline}
    with pytest.raises(StudyError, match="budget must be one of"):
        claim_study(CLAIMS[1], "huge")


def test_budget_can_move_a_factor_between_fixed_and_grid():
    quick = claim_study(CLAIMS[1], "quick")
    assert "batch_size" in quick.grid and quick.grid["batch_size"] == [128]
    assert quick.fixed["epochs"] == 1 and quick.seeds == 8


def _run(evals, epochs, status="done", probes=(), **config):
    config = {"val_size": 5000, "batch_size": 1000, **config}  # 55 steps per epoch
    return RunRecord(config, status, epochs, evals, list(probes))


def _probe(probe, layer, name, value, step=50):
    return {"step": step, "probe": probe, "layer": layer, "name": name, "value": value}


def test_steps_to_target_reads_mid_epoch_and_epoch_end_evaluations():
    evals = [{"step": 20, "val_acc": 0.91}, {"step": 40, "val_acc": 0.94}]
    epochs = [{"epoch": 1, "val_acc": 0.96, "train_acc": 0.97, "test_acc": 0.95}]
    run = _run(evals, epochs)
    assert steps_to(0.90)(run) == 20.0 and steps_to(0.93)(run) == 40.0
    assert steps_to(0.955)(run) == 55.0  # first reached at the end of epoch 1
    assert steps_to(0.99)(run) == math.inf
    assert train_test_gap(run) == pytest.approx(0.02)
    assert math.isnan(train_test_gap(_run([], epochs, status="diverged")))


def test_measures_that_span_a_seeds_runs_or_read_probes():
    def final(acc, lr, status="done"):
        return _run([], [{"val_acc": acc, "test_acc": acc}], status=status, lr=lr)

    runs = [final(0.95, 1e-3), final(0.955, 1e-2), final(0.948, 1e-1), final(0.1, 1.0, "diverged")]
    assert largest_usable_lr(0.01)(runs) == pytest.approx(-1.0)  # 0.948 is within 1 point
    assert largest_usable_lr(0.001)(runs) == pytest.approx(-2.0)
    assert largest_usable_lr(0.01)([runs[3]]) == -math.inf
    # a diverged run counts as chance level in the spread over inits
    assert spread_of_final_accuracy(runs) == pytest.approx(
        np.std([0.95, 0.955, 0.948, 0.1], ddof=1)
    )
    ics = [_probe("ics", 0, "cosine", 1.0), _probe("ics", 1, "cosine", 0.9),
           _probe("ics", 2, "cosine", 0.7), _probe("ics", 2, "cosine", None, step=100)]  # fmt: skip
    assert covariate_shift(_run([], [{}], probes=ics)) == pytest.approx(0.2)  # layer 0 aside
    grads = [_probe("layers", i, "grad_norm", g) for i, g in enumerate((1e-3, 5.0, 1e-1, 7.0))]
    assert gradient_imbalance(_run([], [{}], probes=grads)) == pytest.approx(2.0)  # 1e-3 vs 1e-1


def test_claims_command_gives_verdicts_on_real_mnist(tmp_path, data_root, monkeypatch):
    monkeypatch.setenv("NORMLAB_DATA", str(data_root))
    runner = CliRunner()
    db = str(tmp_path / "c.db")
    result = runner.invoke(app, ["claims", "--only", "4", "--json", "--db", db])
    assert result.exit_code == 0, result.output
    verdicts = json.loads(result.output[result.output.index("[") :])
    assert [v["id"] for v in verdicts] == [4]
    keys = {"id", "claim", "verdict", "effect", "ci_low", "ci_high", "p_corrected", "runs"}
    assert set(verdicts[0]) == keys and verdicts[0]["verdict"] in VERDICTS
    assert verdicts[0]["runs"] == 6 and verdicts[0]["ci_low"] <= verdicts[0]["effect"]
    again = runner.invoke(app, ["claims", "--only", "4", "--db", db])  # resumes: no training
    assert again.exit_code == 0 and "6 already finished, 0 to train" in again.output
    assert verdicts[0]["verdict"] in again.output
    assert "diverged runs: none 0/3, batch 0/3" in again.output  # an outcome, shown


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


def test_inference_claim_on_real_mnist(tmp_path, data_root, monkeypatch):
    monkeypatch.setenv("NORMLAB_DATA", str(data_root))
    result = CliRunner().invoke(
        app, ["claims", "--only", "7", "--json", "--db", str(tmp_path / "c.db")]
    )
    assert result.exit_code == 0, result.output
    (seven,) = json.loads(result.output[result.output.index("[") :])
    assert seven["id"] == 7 and seven["runs"] == 5 and seven["verdict"] in VERDICTS
    assert seven["effect"] > 0  # an unfolded BN pass is never free
    assert "folded outputs differ" not in result.output
