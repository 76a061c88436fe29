"""Figures drawn from real stored runs."""

import matplotlib.image
import numpy as np
import pytest
from typer.testing import CliRunner

from normlab.analysis.records import accuracy_curve, records
from normlab.cli import app
from normlab.report.figure1 import figure1, percentile_curves
from normlab.store.db import Store

STUDY = """
name = "fig1"
seeds = 2
[fixed]
inputs = "scaled"
hidden = [20, 20]
activation = "sigmoid"
dropout = 0.0
batch_size = 1000
epochs = 1
probes = ["activations"]
probe_every = 10
eval_every = 20
[grid]
norm = ["none", "batch"]
"""


def test_figure1_from_a_real_study(tmp_path, data_root, monkeypatch):
    monkeypatch.setenv("NORMLAB_DATA", str(data_root))
    (tmp_path / "fig1.toml").write_text(STUDY)
    db = tmp_path / "f.db"
    done = CliRunner().invoke(app, ["run", str(tmp_path / "fig1.toml"), "--db", str(db)])
    assert done.exit_code == 0, done.output
    store = Store(db)
    runs = records(store, "fig1")
    store.close()
    assert len(runs) == 4
    # 55 steps: evaluations at steps 20 and 40, and the epoch's end
    assert list(accuracy_curve(runs[0])) == [20, 40, 55]
    unit, steps, values = percentile_curves(runs[0])
    assert unit == 10 and list(steps) == [1, 10, 20, 30, 40, 50, 55]  # middle of 0, 10, 19
    assert np.all(values[:, 0] <= values[:, 1]) and np.all(values[:, 1] <= values[:, 2])
    path = figure1(runs, tmp_path / "out" / "figure1.png")
    image = matplotlib.image.imread(path)
    assert image.shape[:2] == (418, 1430)  # 13 × 3.8 inches at 110 dpi
    assert image[..., :3].std() > 0.05  # something is drawn
    with pytest.raises(ValueError, match="none with norm=batch"):
        figure1([r for r in runs if r.config.norm == "none"], tmp_path / "x.png")
