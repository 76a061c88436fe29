"""Shared fixtures: the real MNIST files beside the checkout, loaded once per session."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def pytest_configure(config):
    """What every entry point does first: flush denormals, all cores. A relative
    $NORMLAB_DATA (the README's `NORMLAB_DATA=../shared/data pytest`) is made absolute,
    so that tests which change directory still find the data."""
    from normlab import runtime

    runtime.configure()
    if os.environ.get("NORMLAB_DATA"):
        os.environ["NORMLAB_DATA"] = str(Path(os.environ["NORMLAB_DATA"]).resolve())


def _mnist_root() -> Path:
    candidates = [Path(p) for p in (os.environ.get("NORMLAB_DATA"),) if p]
    candidates.append(REPO.parent / "shared" / "data")
    for root in candidates:
        if (root / "mnist" / "train-images-idx3-ubyte.gz").is_file():
            return root
    pytest.fail(
        "real MNIST not found: set NORMLAB_DATA to a folder holding mnist/*.gz "
        f"(looked in {', '.join(map(str, candidates))})"
    )


@pytest.fixture(scope="session")
def data_root() -> Path:
    return _mnist_root()


@pytest.fixture(scope="session")
def mnist_raw(data_root):
    from normlab.data.locate import load

    return load("mnist", data_root, download=False)


@pytest.fixture(scope="session")
def mnist_scaled(mnist_raw):
    from normlab.data.prepare import prepare

    return prepare(mnist_raw, "scaled")


@pytest.fixture(scope="session")
def mnist_small(mnist_raw):
    """A 2,000-image slice of real MNIST (scaled) for fast training tests."""
    from normlab.data.locate import RawDataset
    from normlab.data.prepare import prepare

    small = RawDataset(
        "mnist",
        mnist_raw.x_train[:2500],
        mnist_raw.y_train[:2500],
        mnist_raw.x_test[:1000],
        mnist_raw.y_test[:1000],
    )
    return prepare(small, "scaled", val_size=500)


@pytest.fixture(scope="session")
def claims_db(tmp_path_factory, data_root):
    """Claims 4 (with its part 12) and 9 judged at the quick budget on real MNIST, and
    their verdicts as ``normlab claims --json`` printed them."""
    from typer.testing import CliRunner

    from normlab.cli import app

    db = tmp_path_factory.mktemp("claims") / "c.db"
    args = ["claims", "--only", "4,9", "--json", "--db", str(db), "--data-dir", str(data_root)]
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 0, done.output
    return db, json.loads(done.output[done.output.index("[") :])
