"""Shared fixtures: the real MNIST files normlab ships, loaded once per session, and the
studies more than one test reads, trained once per session."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
_SLOW = pytest.StashKey[int]()  # how many slow tests this session left out


def pytest_addoption(parser):
    parser.addoption(
        "--slow",
        action="store_true",
        help="also run the slow end-to-end tests (notebook, claims, browser, drills, Ray); CI does",
    )


def pytest_collection_modifyitems(config, items):
    """Tests marked slow run with --slow (or when -m names markers); otherwise they are
    deselected, and the summary says how many."""
    if config.getoption("--slow") or config.option.markexpr:
        return
    slow = [item for item in items if "slow" in item.keywords]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if "slow" not in item.keywords]
        config.stash[_SLOW] = len(slow)


def pytest_terminal_summary(terminalreporter, config):
    if n := config.stash.get(_SLOW, 0):
        terminalreporter.write_line(f"{n} slow end-to-end tests left out: pytest --slow runs them")


def pytest_configure(config):
    """What every entry point does first: flush denormals, all cores. A relative
    $NORMLAB_DATA is made absolute, so that tests which change directory still find it."""
    from normlab import runtime

    runtime.configure()
    if os.environ.get("NORMLAB_DATA"):
        os.environ["NORMLAB_DATA"] = str(Path(os.environ["NORMLAB_DATA"]).resolve())


@pytest.fixture(scope="session")
def data_root(request, tmp_path_factory) -> Path:
    """The tests' data root: $NORMLAB_DATA when set (a user's own copies), else a folder
    in this checkout's pytest cache, kept between sessions so that the reference
    classifier (claim 13's judge) is trained once per checkout. Without a copy of its
    own there, MNIST comes from the one inside normlab, as on a fresh machine."""
    if os.environ.get("NORMLAB_DATA"):
        return Path(os.environ["NORMLAB_DATA"])
    cache = getattr(request.config, "cache", None)  # None under -p no:cacheprovider
    return cache.mkdir("normlab-data") if cache else tmp_path_factory.mktemp("normlab-data")


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """The folder of MNIST's four gzip files: the copy normlab ships."""
    from normlab.data.sources import EMBEDDED

    return EMBEDDED


@pytest.fixture(scope="session")
def debian_fashion() -> Path:
    """Debian's Fashion-MNIST folder (apt-get install dataset-fashion-mnist). Without it
    the tests that read it skip, saying why; under CI ($CI set, as .ci/run does, which
    installs the package) they fail instead."""
    from normlab.data.sources import FASHION_MNIST

    folder = FASHION_MNIST.system_dirs[0]
    if not folder.is_dir():
        message = f"Fashion-MNIST not in {folder}: apt-get install dataset-fashion-mnist"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return folder


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
